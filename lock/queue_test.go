package lock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// TestPostgresReleaseWakesTheLongestWaiting: a release wakes the two
// runners that have waited longest, not every waiter, and the lock goes
// to one of them. The longest-waiting one here is frozen (a session that
// joined the queue and never acts): the second one woken takes the lock.
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

	// The frozen one: in the queue, listening on its channel, never trying.
	frozen := connectPG(t, raw)
	var frozenPID int32
	if err := frozen.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&frozenPID); err != nil {
		t.Fatal(err)
	}
	if _, err := frozen.Exec(context.Background(), fmt.Sprintf("LISTEN %s; SELECT pg_advisory_lock_shared(%d, %d)",
		holder.waiterChannel(frozenPID), holder.q1, holder.q2)); err != nil {
		t.Fatal(err)
	}
	waitQueued(1)

	// Three real waiters, one after another, so that they queue in order.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	got := make(chan int, 3)
	for i := 1; i <= 3; i++ {
		w := newLocker(t, u, ModeSession, db)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w.Lock(ctx) == nil {
				got <- i
			}
		}()
		waitQueued(i + 1)
	}
	// Cleanups run last in, first out: the waiters' Lock returns before
	// their Unlock cleanups, also when the test fails half-way.
	t.Cleanup(func() { cancel(); wg.Wait() })
	pids := queued()

	// A listener on every waiter's channel sees who is woken; and on the
	// key's own, which nobody listens on now: notifying it would wake
	// every listening backend for nothing.
	listener := connectPG(t, raw)
	channels := map[string]string{holder.channel: "the key's channel"}
	for i, pid := range pids {
		name := fmt.Sprintf("waiter %d", i)
		if int32(pid) == frozenPID {
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
	case i := <-got:
		if i != 1 {
			t.Errorf("waiter %d took the lock, want waiter 1 (the one woken besides the frozen one)", i)
		}
	case <-time.After(time.Minute):
		t.Fatal("no waiter took the lock")
	}
}
