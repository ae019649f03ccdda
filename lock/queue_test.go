package lock

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// TestPostgresReleaseWakesTheLongestWaiting: a release wakes the two
// runners that have waited longest, not every waiter, and the lock goes
// to one of them. The longest-waiting one here is frozen (a session that
// joined the queue and never acts): the second one woken takes the lock.
// Only that one is a real runner, so nothing but its wake-up (or its own
// poll) can give it the lock; the others only show who is woken.
func TestPostgresReleaseWakesTheLongestWaiting(t *testing.T) {
	srv := testdb.Postgres(t)
	db, raw := srv.CreateDatabase(t)
	u := mustParse(t, raw)
	holder := newLocker(t, u, ModeSession, db).(*pgLocker)
	if err := lockWithin(t, holder, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	observer := connectPG(t, raw)
	queued := func() []int64 {
		rows, err := observer.Query(context.Background(), fmt.Sprintf(`SELECT l.pid FROM pg_locks l
			JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.classid = %d::oid AND l.objid = %d::oid AND l.objsubid = 2 AND l.mode = 'ShareLock'
			ORDER BY a.backend_start, l.pid`, uint32(holder.q1), uint32(holder.q2)))
		if err != nil {
			t.Fatal(err)
		}
		var pids []int64
		for rows.Next() {
			var pid int64
			if err := rows.Scan(&pid); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return pids
	}
	waitQueued := func(n int) []int64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			pids := queued()
			if len(pids) == n {
				return pids
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d runners joined the queue, want %d", len(pids), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// A session in the queue, listening on its channel, that never tries:
	// the frozen runner, and the runners queued later, between their polls.
	queue := func() {
		c := connectPG(t, raw)
		var pid int32
		if err := c.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(context.Background(), fmt.Sprintf("LISTEN %s; SELECT pg_advisory_lock_shared(%d, %d)",
			holder.waiterChannel(pid), holder.q1, holder.q2)); err != nil {
			t.Fatal(err)
		}
	}
	// In the order they queue (by connection age): the frozen runner,
	// waiter 1 (a real one), waiters 2 and 3.
	queue()
	waitQueued(1)
	ctx, cancel := context.WithCancel(context.Background())
	w := newLocker(t, u, ModeSession, db)
	got := make(chan error, 1)
	go func() { got <- w.Lock(ctx) }()
	// Cleanups run last in, first out: the waiter's Lock returns before
	// its Unlock cleanup, also when the test fails half-way.
	t.Cleanup(func() { cancel(); <-got })
	waitQueued(2)
	queue()
	queue()
	pids := waitQueued(4)

	// A listener on every waiter's channel sees who is woken; and on the
	// key's own, which nobody listens on now: notifying it would wake
	// every listening backend for nothing.
	listener := connectPG(t, raw)
	channels := map[string]string{holder.channel: "the key's channel"}
	for i, pid := range pids {
		name := fmt.Sprintf("waiter %d", i)
		if i == 0 {
			name = "the frozen waiter"
		}
		channels[holder.waiterChannel(int32(pid))] = name
	}
	for ch := range channels {
		if _, err := listener.Exec(context.Background(), "LISTEN "+ch); err != nil {
			t.Fatal(err)
		}
	}

	if err := holder.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	// One release's notifications are sent together, once it commits:
	// after the first, a round trip brings in the rest.
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no runner was woken: %v", err)
	}
	woken := []string{channels[n.Channel]}
	if _, err := listener.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	done, dcancel := context.WithCancel(context.Background())
	dcancel()
	for {
		n, err := listener.WaitForNotification(done)
		if err != nil {
			break
		}
		woken = append(woken, channels[n.Channel])
	}
	slices.Sort(woken)
	want := []string{"the frozen waiter", "waiter 1"}
	if !slices.Equal(woken, want) {
		t.Errorf("the release woke %q, want %q", woken, want)
	}
	select {
	case err := <-got:
		got <- err // for the cleanup
		if err != nil {
			t.Errorf("waiter 1 (woken with the frozen one) did not take the lock: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("waiter 1 did not take the lock")
	}
}
