package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/testdb"
)

// logBuffer collects a Locker's log, for tests that look for a line.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func capture() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, nil)), buf
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func keepAliveOf(t *testing.T, l Locker) *keepAlive {
	t.Helper()
	switch l := l.(type) {
	case *pgLocker:
		return l.ka
	case *myLocker:
		return l.ka
	}
	t.Fatalf("%T has no keep-alive", l)
	return nil
}

// checkHourly makes l check its lock only hourly, so that a loss it
// reports within a test was found between checks; its session is set to
// be ended by the server no sooner (or MariaDB's wait_timeout would end
// it between checks).
func checkHourly(t *testing.T, l Locker) {
	keepAliveOf(t, l).timing.KeepAlive = time.Hour
	switch l := l.(type) {
	case *pgLocker:
		l.timing.ServerBound = 2 * time.Hour
	case *myLocker:
		l.timing.ServerBound = 2 * time.Hour
	}
}

func lostError(t *testing.T, l Locker) *LostError {
	t.Helper()
	var e *LostError
	if err := l.Err(); !errors.As(err, &e) || !errors.Is(err, ErrLost) {
		t.Fatalf("Err() = %v, want a *LostError wrapping ErrLost", err)
	}
	return e
}

func assertNotLost(t *testing.T, l Locker) {
	t.Helper()
	select {
	case <-l.Lost():
		t.Fatalf("lock lost: %v", l.Err())
	default:
	}
}

// atOnce runs f for every row as subtests that all run at the same time.
// Not t.Parallel: go test runs parallel tests only -parallel (GOMAXPROCS,
// 2 in CI) at a time, and these spend their time waiting on timers and
// servers, not on the CPU.
func atOnce[R fmt.Stringer](t *testing.T, rows []R, f func(t *testing.T, r R)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range rows {
		wg.Go(func() { t.Run(r.String(), func(t *testing.T) { f(t, r) }) })
	}
	wg.Wait()
}

// kindName is a server kind as a subtest's name.
type kindName string

func (k kindName) String() string { return string(k) }

func serverFor(kind string) (shared, private func(testing.TB) *testdb.Server) {
	if kind == testdb.KindMariaDB {
		return testdb.MariaDB, testdb.NewMariaDB
	}
	return testdb.Postgres, testdb.NewPostgres
}

// dbMode is a database lock: a server kind and a lock mode.
type dbMode struct {
	name string
	kind string
	mode Mode
}

func (m dbMode) String() string { return m.name }

var dbModes = []dbMode{
	{"postgresql/session", testdb.KindPostgreSQL, ModeSession},
	{"postgresql/transaction", testdb.KindPostgreSQL, ModeTransaction},
	{"mariadb", testdb.KindMariaDB, ModeSession},
}

// TestServerTimeoutsPostgres: timeouts a role (here, the role in the
// test's database) sets for every session end neither the holder's
// session nor the waiters'; the holder holds across several keep-alive
// intervals longer than the timeouts, and the waiter keeps waiting.
func TestServerTimeoutsPostgres(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	db, raw := srv.CreateDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []struct {
		name string
		// bites shows, on a plain connection of the role, that the
		// setting is in force (lock_timeout would take a lock conflict).
		bites func(conn *pgx.Conn) error
	}{
		{"idle_session_timeout", func(conn *pgx.Conn) error {
			time.Sleep(1500 * time.Millisecond)
			_, err := conn.Exec(ctx, "SELECT 1")
			return err
		}},
		{"idle_in_transaction_session_timeout", func(conn *pgx.Conn) error {
			if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
				return err
			}
			time.Sleep(1500 * time.Millisecond)
			_, err := conn.Exec(ctx, "SELECT 1")
			return err
		}},
		{"statement_timeout", func(conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, "SELECT pg_sleep(1.5)")
			return err
		}},
		{"lock_timeout", nil},
	} {
		srv.Exec(t, "", fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET %s = '1s'", testdb.AppUser, db, s.name))
		if s.bites != nil {
			if err := s.bites(connectPG(t, raw)); err == nil {
				t.Fatalf("%s = 1s does not end a plain session: the test proves nothing", s.name)
			}
		}
	}
	for _, mode := range []Mode{ModeSession, ModeTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			// Keep-alive checks 1.5s apart leave the sessions idle longer
			// than the timeouts.
			opts := Options{Name: string(mode), Mode: mode, ConnectTimeout: 10 * time.Second, KeepAlive: 1500 * time.Millisecond,
				DeadHolderTimeout: 8 * time.Second, StopLead: time.Second, Logger: quiet}
			holdAcrossKeepAlives(t, mustParse(t, raw), opts, 5*time.Second)
		})
	}
}

// holdAcrossKeepAlives takes the lock, lets a waiter wait for it for
// hold (several keep-alive intervals), and checks that the lock was
// neither lost nor given to the waiter, and is released cleanly.
func holdAcrossKeepAlives(t *testing.T, u *dburl.URL, opts Options, hold time.Duration) {
	t.Helper()
	holder := newLockerWith(t, u, opts)
	if err := lockWithin(t, holder, 30*time.Second); err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	waiter := newLockerWith(t, u, opts)
	if err := lockWithin(t, waiter, hold); !errors.Is(err, ErrTimeout) {
		t.Fatalf("waiter's Lock() = %v, want ErrTimeout after waiting %s", err, hold)
	}
	assertNotLost(t, holder)
	if err := holder.Unlock(context.Background()); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	next := newLockerWith(t, u, opts)
	if err := lockWithin(t, next, 30*time.Second); err != nil {
		t.Fatalf("Lock() after the release = %v", err)
	}
}

// TestServerTimeoutsMariaDB: a server-wide wait_timeout shorter than the
// keep-alive interval and a max_statement_time shorter than a GET_LOCK
// wait end neither the holder's session nor the waiter's wait.
func TestServerTimeoutsMariaDB(t *testing.T) {
	t.Parallel()
	srv := testdb.NewMariaDB(t)
	srv.Exec(t, "", "SET GLOBAL wait_timeout = 2, GLOBAL max_statement_time = 1")
	t.Cleanup(func() { srv.Exec(t, "", "SET GLOBAL wait_timeout = 28800, GLOBAL max_statement_time = 0") })
	db, raw := srv.CreateDatabase(t)
	u := mustParse(t, raw)

	if n := srv.QueryInt(t, db, "SELECT @@session.wait_timeout"); n != 2 {
		t.Fatalf("new sessions have wait_timeout %d, want 2", n)
	}
	opts := Options{Name: db, ConnectTimeout: 10 * time.Second, KeepAlive: 2500 * time.Millisecond,
		DeadHolderTimeout: 9 * time.Second, StopLead: time.Second, Logger: quiet}
	holdAcrossKeepAlives(t, u, opts, 6*time.Second)
}

// TestStalledCheck: the holder's connection stops answering (a relay that
// stops forwarding, while the kernels still acknowledge). A stall within
// the tolerated one loses nothing; one that reaches the report time is
// reported Lost, not definite, with StopBy at the fence, still ahead;
// and Unlock, with a check in flight, is bounded by its context.
func TestStalledCheck(t *testing.T) {
	t.Parallel()
	// Transaction mode checks the same way as session mode.
	atOnce(t, []dbMode{dbModes[0], dbModes[2]}, func(t *testing.T, m dbMode) {
		shared, _ := serverFor(m.kind)
		srv := shared(t)
		_, raw := srv.CreateDatabase(t)
		r := newRelay(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()))
		opts := Options{Name: "app", Mode: m.mode, ConnectTimeout: 10 * time.Second, KeepAlive: time.Second,
			DeadHolderTimeout: 14 * time.Second, StopLead: time.Second, Logger: quiet}
		timing, err := TimingFor(opts)
		if err != nil {
			t.Fatal(err)
		}
		if timing.ToleratedStall <= 8*time.Second {
			t.Fatalf("tolerated stall %s: the test needs more than 8s", timing.ToleratedStall)
		}
		holder := newLockerWith(t, mustParse(t, r.via(t, raw, srv.Port())), opts)
		if err := lockWithin(t, holder, 60*time.Second); err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		time.Sleep(2 * time.Second)

		r.pause()
		time.Sleep(8 * time.Second)
		assertNotLost(t, holder)
		r.resume()
		time.Sleep(2 * time.Second) // the stalled check is answered, and the next
		assertNotLost(t, holder)

		paused := time.Now()
		r.pause()
		select {
		case <-holder.Lost():
		case <-time.After(timing.StopAfterUnconfirmed + 10*time.Second):
			t.Fatal("a stall past the report time was not reported")
		}
		found := time.Now()
		e := lostError(t, holder)
		if e.Definite {
			t.Errorf("Definite = true for an unanswered check: %v", e)
		}
		if !e.StopBy.After(found) {
			t.Errorf("StopBy is %v before the report, want ahead", found.Sub(e.StopBy))
		}
		if e.StopBy.After(paused.Add(timing.Fence)) {
			t.Errorf("StopBy is %v after the stall began, past the fence (%v) after the last answered check", e.StopBy.Sub(paused), timing.Fence)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		begin := time.Now()
		if err := holder.Unlock(ctx); err == nil {
			t.Error("Unlock() of a lost lock = nil, want an error saying it was closed instead")
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Unlock with a check in flight took %v, past its 1s context", d)
		}
	})
}

// TestBlackHoledWaiter: a waiter whose database stops answering gives up
// with ErrUnavailable within ConnectTimeout of the last answer, not at
// its lock timeout.
func TestBlackHoledWaiter(t *testing.T) {
	t.Parallel()
	atOnce(t, dbModes, func(t *testing.T, m dbMode) {
		shared, _ := serverFor(m.kind)
		srv := shared(t)
		_, raw := srv.CreateDatabase(t)
		holder := newLocker(t, mustParse(t, raw), m.mode, "app")
		if err := lockWithin(t, holder, 30*time.Second); err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		r := newRelay(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()))
		log, logs := capture()
		opts := testOptions("app", m.mode)
		opts.ConnectTimeout, opts.Logger = 3*time.Second, log
		waiter := newLockerWith(t, mustParse(t, r.via(t, raw, srv.Port())), opts)
		got := make(chan error, 1)
		go func() { got <- lockWithin(t, waiter, 5*time.Minute) }()
		waitFor(t, "the waiter to wait", 30*time.Second, func() bool { return strings.Contains(logs.String(), "waiting") })
		time.Sleep(500 * time.Millisecond)

		paused := time.Now()
		r.pause()
		select {
		case err := <-got:
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Lock() = %v, want ErrUnavailable", err)
			}
			if d := time.Since(paused); d > opts.ConnectTimeout+2*time.Second {
				t.Errorf("gave up %v after the database went silent, want within the connect timeout %v (and a little)", d, opts.ConnectTimeout)
			}
		case <-time.After(time.Minute):
			t.Fatal("the waiter did not give up")
		}
	})
}

// TestServerRestartWhileHeld: the server restarts while the lock is held.
// The holder finds out at once, not at its next check (an hour away
// here), and definitely; a waiter reconnects, takes the lock, and holds
// it for the takeover guard before Lock returns.
func TestServerRestartWhileHeld(t *testing.T) {
	t.Parallel()
	atOnce(t, []kindName{testdb.KindPostgreSQL, testdb.KindMariaDB}, func(t *testing.T, k kindName) {
		kind := string(k)
		_, private := serverFor(kind)
		srv := private(t)
		_, raw := srv.CreateDatabase(t)
		u := mustParse(t, raw)
		holder := newLocker(t, u, ModeSession, "app")
		checkHourly(t, holder)
		if err := lockWithin(t, holder, 30*time.Second); err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		log, logs := capture()
		opts := testOptions("app", ModeSession)
		opts.ConnectTimeout, opts.Logger = time.Minute, log
		waiter := newLockerWith(t, u, opts)
		got := make(chan error, 1)
		go func() { got <- lockWithin(t, waiter, 2*time.Minute) }()
		waitFor(t, "the waiter to wait", 30*time.Second, func() bool {
			select {
			case err := <-got:
				t.Fatalf("waiter's Lock() = %v before the restart\n%s", err, logs)
			default:
			}
			return strings.Contains(logs.String(), "waiting")
		})

		stopping := time.Now()
		srv.Stop(t)
		stopped := time.Now()
		select {
		case <-holder.Lost():
		case <-time.After(10 * time.Second):
			t.Fatal("the holder did not notice the restart at once")
		}
		if d := time.Since(stopping); d > 10*time.Second {
			t.Errorf("the holder noticed %v after the stop began", d)
		}
		if e := lostError(t, holder); !e.Definite {
			t.Errorf("Definite = false after the server ended the session: %v", e)
		}
		srv.Start(t)

		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("waiter's Lock() = %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("the waiter did not get the lock after the restart")
		}
		guard := keepAliveOf(t, waiter).timing.TakeoverGuard
		if d := time.Since(stopped); d < guard {
			t.Errorf("the waiter's Lock() returned %v after the server stopped, before the takeover guard %v", d, guard)
		}
		if !strings.Contains(logs.String(), "holding it before running") {
			t.Errorf("the waiter did not say why it held the lock before running:\n%s", logs)
		}
		assertNotLost(t, waiter)
	})
}

// TestFrozenHolder: migrun is paused (its keep-alive blocked, as by
// SIGSTOP) for longer than the server bound. PostgreSQL keeps the session (the
// kernel answers its TCP keep-alives): on waking the holder confirms the
// lock afresh instead of declaring it lost. MariaDB ends the session at
// its wait_timeout: on waking the holder finds it gone.
func TestFrozenHolder(t *testing.T) {
	t.Parallel()
	atOnce(t, dbModes, func(t *testing.T, m dbMode) {
		shared, _ := serverFor(m.kind)
		srv := shared(t)
		db, raw := srv.CreateDatabase(t)
		opts := testOptions(db, m.mode)
		opts.KeepAlive = time.Second
		holder := newLockerWith(t, mustParse(t, raw), opts)
		ka := keepAliveOf(t, holder)
		freeze := ka.timing.ServerBound + time.Second // past the report time, the fence and MariaDB's wait_timeout
		var once sync.Once
		var rounds int
		woke := make(chan time.Time, 1)
		ka.freeze = func(stage string) {
			if stage != "idle" {
				return
			}
			if rounds++; rounds == 3 { // after two checks
				once.Do(func() {
					time.Sleep(freeze)
					woke <- time.Now()
				})
			}
		}
		if err := lockWithin(t, holder, 30*time.Second); err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		wokeAt := <-woke
		if m.kind == testdb.KindMariaDB {
			select {
			case <-holder.Lost():
			case <-time.After(10 * time.Second):
				t.Fatal("the holder did not find its ended session on waking")
			}
			if d := time.Since(wokeAt); d > 5*time.Second {
				t.Errorf("found %v after waking", d)
			}
			if e := lostError(t, holder); !e.Definite {
				t.Errorf("Definite = false for a session the server ended: %v", e)
			}
			return
		}
		time.Sleep(3 * opts.KeepAlive)
		assertNotLost(t, holder)
		n := srv.QueryInt(t, db, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
		if n != 1 {
			t.Errorf("%d advisory locks held after the pause, want 1", n)
		}
		if err := holder.Unlock(context.Background()); err != nil {
			t.Errorf("Unlock() = %v", err)
		}
	})
}

// TestSessionSettings: the lock's session carries the settings that
// protect it, with values from the timing, and migrun's identity.
func TestSessionSettings(t *testing.T) {
	for _, m := range dbModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			shared, _ := serverFor(m.kind)
			srv := shared(t)
			_, raw := srv.CreateDatabase(t)
			opts := testOptions("app", m.mode)
			opts.Identity = "migrun job/db-migrate-7f9c"
			l := newLockerWith(t, mustParse(t, raw), opts)
			if err := lockWithin(t, l, 30*time.Second); err != nil {
				t.Fatalf("Lock() = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ka := keepAliveOf(t, l)
			if !ka.halt(ctx) { // the connection is the test's now
				t.Fatal("lock not confirmed")
			}
			timing := ka.timing
			var want, got []string
			switch l := l.(type) {
			case *pgLocker:
				var names []string
				for _, s := range pgSettings(timing, serverMajor(l.conn.PgConn())) {
					names = append(names, fmt.Sprintf("current_setting('%s')", s.name))
					want = append(want, s.value)
				}
				names = append(names, "current_setting('application_name')")
				want = append(want, opts.Identity)
				rows, err := l.conn.Query(ctx, "SELECT "+strings.Join(names, ", "))
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					vals, _ := rows.Values()
					for _, v := range vals {
						got = append(got, fmt.Sprint(v))
					}
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
			case *myLocker:
				l2 := int(timing.ServerBound / time.Second)
				want = []string{fmt.Sprint(l2), fmt.Sprint(l2), fmt.Sprint(l2), fmt.Sprint(l2), "0"}
				var a, b, c, d, e string
				err := l.conn.QueryRowContext(ctx, "SELECT @@session.wait_timeout, @@session.interactive_timeout, @@session.net_read_timeout, @@session.net_write_timeout, @@session.max_statement_time").Scan(&a, &b, &c, &d, &e)
				if err != nil {
					t.Fatal(err)
				}
				got = []string{a, b, c, d, e}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("session settings %q, want %q", got, want)
			}
		})
	}
}

// TestPgBouncer: through PgBouncer, transaction mode works in
// transaction pooling (its statements, BEGIN included, go in one
// message), and session mode in session pooling, where the backend key
// is PgBouncer's own and the lock is verified from a second transaction.
func TestPgBouncer(t *testing.T) {
	for _, tt := range []struct {
		pool string
		mode Mode
	}{{"transaction", ModeTransaction}, {"session", ModeSession}} {
		t.Run(tt.pool, func(t *testing.T) {
			t.Parallel()
			srv := testdb.Postgres(t)
			bouncer := srv.PgBouncer(t, tt.pool, 4)
			db, _ := srv.CreateDatabase(t)
			u := mustParse(t, bouncer.URL(db))
			log, logs := capture()
			opts := testOptions("app", tt.mode)
			opts.Logger = log
			first := newLockerWith(t, u, opts)
			if err := lockWithin(t, first, 30*time.Second); err != nil {
				t.Fatalf("Lock() = %v", err)
			}
			if pooled := strings.Contains(logs.String(), "through a pooler"); pooled != (tt.mode == ModeSession) {
				t.Errorf("pooler noticed: %v, want %v (session mode only):\n%s", pooled, tt.mode == ModeSession, logs)
			}
			if err := lockWithin(t, newLocker(t, u, tt.mode, "app"), time.Second); !errors.Is(err, ErrTimeout) {
				t.Fatalf("second Lock() = %v, want ErrTimeout", err)
			}
			time.Sleep(time.Second) // a few checks
			assertNotLost(t, first)
			if err := first.Unlock(context.Background()); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
			if err := lockWithin(t, newLocker(t, u, tt.mode, "app"), 30*time.Second); err != nil {
				t.Fatalf("Lock() after the release = %v", err)
			}
		})
	}
}

func TestTimingFor(t *testing.T) {
	def, err := TimingFor(Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := Timing{ServerBound: 28 * time.Second, Fence: 27 * time.Second, StopAfterUnconfirmed: 16 * time.Second,
		ToleratedStall: 11 * time.Second, TakeoverGuard: 28 * time.Second, WakeGrace: time.Second, KeepAlive: 5 * time.Second}
	if def != want {
		t.Errorf("TimingFor(defaults) = %+v, want %+v", def, want)
	}
	if t2, _ := TimingFor(Options{DeadHolderTimeout: 30900 * time.Millisecond}); t2.ServerBound != 28*time.Second {
		t.Errorf("ServerBound for 30.9s = %v, want whole seconds (28s)", t2.ServerBound)
	}
	if _, err := TimingFor(Options{DeadHolderTimeout: MaxDeadHolderTimeout + time.Second}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("TimingFor(over the most) = %v, want ErrUnsupported", err)
	}
	if _, err := TimingFor(Options{DeadHolderTimeout: MaxDeadHolderTimeout}); err != nil {
		t.Errorf("TimingFor(the most) = %v", err)
	}
	// An unset dead-holder timeout fits the keep-alive it is given.
	if t3, err := TimingFor(Options{KeepAlive: 10 * time.Second}); err != nil || t3.ServerBound != 32*time.Second {
		t.Errorf("TimingFor(keep-alive 10s) = %+v, %v; want the least dead-holder timeout that fits, 34s (ServerBound 32s)", t3, err)
	}
	tests := []struct {
		name string
		opts Options
		min  time.Duration // 0: fits
	}{
		{"least that fits the defaults", Options{DeadHolderTimeout: 24 * time.Second}, 0},
		{"a second short", Options{DeadHolderTimeout: 23 * time.Second}, 24 * time.Second},
		{"the old 10s keep-alive", Options{KeepAlive: 10 * time.Second, DeadHolderTimeout: 30 * time.Second}, 34 * time.Second},
		{"fractions round up", Options{KeepAlive: 300 * time.Millisecond, StopLead: 1100 * time.Millisecond, DeadHolderTimeout: 4 * time.Second}, 5 * time.Second},
		{"tiny", Options{KeepAlive: 100 * time.Millisecond, StopLead: 100 * time.Millisecond, DeadHolderTimeout: 3 * time.Second}, 4 * time.Second},
	}
	for _, tt := range tests {
		_, err := TimingFor(tt.opts)
		var te *TimingError
		switch {
		case tt.min == 0 && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.min != 0 && (!errors.As(err, &te) || !errors.Is(err, ErrUnsupported)):
			t.Errorf("%s: err = %v, want a *TimingError wrapping ErrUnsupported", tt.name, err)
		case tt.min != 0 && te.Min != tt.min:
			t.Errorf("%s: Min = %v, want %v", tt.name, te.Min, tt.min)
		}
		if tt.min != 0 {
			// The least it names fits.
			fixed := tt.opts
			fixed.DeadHolderTimeout = tt.min
			if _, err := TimingFor(fixed); err != nil {
				t.Errorf("%s: the named least %v does not fit: %v", tt.name, tt.min, err)
			}
		}
	}
}
