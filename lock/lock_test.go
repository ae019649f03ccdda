package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backend is one way of locking, for the contract every Locker keeps.
type backend struct {
	name string
	url  func(t *testing.T) *dburl.URL
	mode Mode
}

func backends() []backend {
	server := func(get func(testing.TB) *testdb.Server) func(t *testing.T) *dburl.URL {
		return func(t *testing.T) *dburl.URL {
			_, raw := get(t).CreateDatabase(t)
			return mustParse(t, raw)
		}
	}
	return []backend{
		{"postgresql/session", server(testdb.Postgres), ModeSession},
		{"postgresql/transaction", server(testdb.Postgres), ModeTransaction},
		{"mariadb", server(testdb.MariaDB), ModeSession},
		{"file", func(t *testing.T) *dburl.URL {
			return mustParse(t, "sqlite3:"+filepath.Join(t.TempDir(), "db.sqlite3"))
		}, ModeSession},
	}
}

func mustParse(t *testing.T, raw string) *dburl.URL {
	t.Helper()
	u, err := dburl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// testOptions are the options of most tests: the timing at a scale of
// seconds (ServerBound and TakeoverGuard 4s, Fence 3s, a lock reported
// after 2s unconfirmed).
func testOptions(name string, mode Mode) Options {
	return Options{Name: name, Mode: mode, ConnectTimeout: 10 * time.Second,
		KeepAlive: 300 * time.Millisecond, DeadHolderTimeout: 6 * time.Second, StopLead: time.Second, Logger: quiet}
}

func newLocker(t *testing.T, u *dburl.URL, mode Mode, name string) Locker {
	t.Helper()
	return newLockerWith(t, u, testOptions(name, mode))
}

func newLockerWith(t *testing.T, u *dburl.URL, opts Options) Locker {
	t.Helper()
	l, err := New(u, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Unlock(ctx)
	})
	return l
}

func lockWithin(t *testing.T, l Locker, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return l.Lock(ctx)
}

// TestContract: what every backend guarantees.
func TestContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			u := b.url(t)

			first := newLocker(t, u, b.mode, "app")
			if err := lockWithin(t, first, 30*time.Second); err != nil {
				t.Fatalf("Lock() = %v", err)
			}

			// Held: a second runner times out, and says so.
			second := newLocker(t, u, b.mode, "app")
			if err := lockWithin(t, second, 300*time.Millisecond); !errors.Is(err, ErrTimeout) {
				t.Fatalf("Lock() while held = %v, want ErrTimeout", err)
			}
			// Another name is another lock.
			other := newLocker(t, u, b.mode, "other-app")
			if err := lockWithin(t, other, 30*time.Second); err != nil {
				t.Fatalf("Lock(other name) = %v", err)
			}

			// A waiter gets the lock once the holder releases it.
			got := make(chan error, 1)
			waiter := newLocker(t, u, b.mode, "app")
			go func() { got <- lockWithin(t, waiter, 30*time.Second) }()
			if err := first.Unlock(context.Background()); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
			if err := <-got; err != nil {
				t.Fatalf("waiter's Lock() = %v", err)
			}
			if err := first.Unlock(context.Background()); err != nil {
				t.Fatalf("second Unlock() = %v", err)
			}
			if err := waiter.Unlock(context.Background()); err != nil {
				t.Fatalf("waiter's Unlock() = %v", err)
			}
			select {
			case <-waiter.Lost():
				t.Fatalf("Lost() fired after a clean unlock: %v", waiter.Err())
			default:
			}
		})
	}
}

// TestContention: many runners at once never overlap.
func TestContention(t *testing.T) {
	const runners = 20
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			u := b.url(t)
			var inside, maxInside, done atomic.Int32
			var wg sync.WaitGroup
			errs := make(chan error, runners)
			for range runners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l, err := New(u, testOptions("contended", b.mode))
					if err != nil {
						errs <- err
						return
					}
					if err := lockWithin(t, l, 60*time.Second); err != nil {
						errs <- err
						return
					}
					n := inside.Add(1)
					for {
						m := maxInside.Load()
						if n <= m || maxInside.CompareAndSwap(m, n) {
							break
						}
					}
					time.Sleep(5 * time.Millisecond) // some work inside the critical section
					inside.Add(-1)
					done.Add(1)
					errs <- l.Unlock(context.Background())
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if maxInside.Load() != 1 || done.Load() != runners {
				t.Errorf("max %d inside the critical section, %d of %d done", maxInside.Load(), done.Load(), runners)
			}
		})
	}
}

// TestBeforeWait: Options.BeforeWait is called before a runner waits for
// a lock held by another runner, before it says so, and not for a free
// lock (unless the takeover guard makes that wait too).
func TestBeforeWait(t *testing.T) {
	const waiting = "lock is held by another runner; waiting"
	const guarded = "lock taken, but holding it before running"
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			u := b.url(t)
			logs := newRecords()
			var calls atomic.Int32
			var saidBefore atomic.Bool // the waiting line was logged before a call
			opts := testOptions("before-wait", b.mode)
			opts.Logger = slog.New(logs)
			opts.BeforeWait = func() {
				if len(logs.matching(waiting)) > 0 {
					saidBefore.Store(true)
				}
				calls.Add(1)
			}
			holder := newLockerWith(t, u, opts)
			if err := lockWithin(t, holder, time.Minute); err != nil {
				t.Fatal(err)
			}
			guards := 0
			logs.mu.Lock()
			for _, rec := range logs.all {
				if strings.HasPrefix(rec.Message, guarded) {
					guards++
				}
			}
			logs.mu.Unlock()
			if n := int(calls.Load()); n != guards {
				t.Errorf("a free lock: BeforeWait called %d times, want %d (takeover guard waits)", n, guards)
			}
			calls.Store(0)

			waiter := newLockerWith(t, u, opts)
			got := make(chan error, 1)
			go func() { got <- lockWithin(t, waiter, time.Minute) }()
			logs.waitCount(t, waiting, 1)
			if calls.Load() == 0 || saidBefore.Load() {
				t.Errorf("a held lock: BeforeWait called %d times, after the waiting line: %v; want before it", calls.Load(), saidBefore.Load())
			}
			if err := holder.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPostgresNotRailsLock: Rails' own migration lock (one bigint key,
// 2053462845 * crc32(database name)) stays free while migrun holds its
// lock, so the migration can take it.
func TestPostgresNotRailsLock(t *testing.T) {
	for _, mode := range []Mode{ModeSession, ModeTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			srv := testdb.Postgres(t)
			db, raw := srv.CreateDatabase(t)
			l := newLocker(t, mustParse(t, raw), mode, db)
			if err := lockWithin(t, l, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			railsKey := 2053462845 * int64(crc32.ChecksumIEEE([]byte(db)))
			conn := connectPG(t, raw)
			var ok bool
			if err := conn.QueryRow(context.Background(), "SELECT pg_try_advisory_lock($1::bigint)", railsKey).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatal("Rails' migration lock was blocked by migrun's lock")
			}
		})
	}
}

// TestPostgresLockHoldsNoSnapshot: CREATE INDEX CONCURRENTLY, which
// waits for the transaction of every session that had a snapshot when it
// looked, completes while one runner holds the lock and others wait. The
// holder confirms its lock all the time here (every millisecond), so a
// confirmation that took a snapshot inside the held transaction would
// stall an index build until the lock was released: a deadlock, as the
// migration building it runs under that lock.
func TestPostgresLockHoldsNoSnapshot(t *testing.T) {
	for _, mode := range []Mode{ModeSession, ModeTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			srv := testdb.Postgres(t)
			db, raw := srv.CreateDatabase(t)
			u := mustParse(t, raw)
			opts := testOptions(db, mode)
			opts.KeepAlive = time.Millisecond
			holder := newLockerWith(t, u, opts)
			if err := lockWithin(t, holder, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			// Cleanups run last in, first out: the waiters' Lock returns
			// (registered below) before their Unlock cleanups, also when
			// the test fails half-way.
			for range 3 {
				waiter := newLocker(t, u, mode, db)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = waiter.Lock(ctx)
				}()
			}
			t.Cleanup(func() { cancel(); wg.Wait() })
			// Wait until the waiters are connected and waiting.
			deadline := time.Now().Add(30 * time.Second)
			for srv.QueryInt(t, db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrun'") < 4 {
				if time.Now().After(deadline) {
					t.Fatal("waiters never connected")
				}
				time.Sleep(20 * time.Millisecond)
			}
			conn := connectPG(t, raw)
			if _, err := conn.Exec(context.Background(), "CREATE TABLE users (email text)"); err != nil {
				t.Fatal(err)
			}
			// A busy server: thousands of locks make every read of
			// pg_locks take milliseconds, long enough for an index build's
			// last steps to fall inside one.
			busy := connectPG(t, raw)
			if _, err := busy.Exec(context.Background(), "SELECT pg_advisory_lock(1, g) FROM generate_series(1, 5000) g"); err != nil {
				t.Fatal(err)
			}
			// Each build looks for snapshots once, at its end; ten of
			// them against a check every millisecond.
			for i := range 10 {
				// A bound on what must not hang, generous for a loaded machine.
				ictx, icancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := conn.Exec(ictx, "CREATE INDEX CONCURRENTLY users_email ON users (email)")
				icancel()
				if err != nil {
					t.Fatalf("build %d: CREATE INDEX CONCURRENTLY: %v (a runner holds a snapshot?)", i+1, err)
				}
				if _, err := conn.Exec(context.Background(), "DROP INDEX users_email"); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			wg.Wait()
		})
	}
}

func connectPG(t *testing.T, raw string) *pgx.Conn {
	t.Helper()
	u := mustParse(t, raw)
	cfg, err := dbconn.PostgresConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "test"
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestKeepAliveDetectsLoss: the lock's backend is killed while held; the
// holder finds out at once (it checks only hourly here), for certain.
func TestKeepAliveDetectsLoss(t *testing.T) {
	tests := []struct {
		name string
		srv  func(testing.TB) *testdb.Server
		mode Mode
		kill func(t *testing.T, srv *testdb.Server, db string)
	}{
		{"postgresql/session", testdb.Postgres, ModeSession, terminatePG},
		{"postgresql/transaction", testdb.Postgres, ModeTransaction, terminatePG},
		{"mariadb", testdb.MariaDB, ModeSession, func(t *testing.T, srv *testdb.Server, db string) {
			id := srv.QueryInt(t, "", fmt.Sprintf("SELECT IS_USED_LOCK('%s')", mysqlLockName(db)))
			srv.Exec(t, "", fmt.Sprintf("KILL %d", id))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := tt.srv(t)
			db, raw := srv.CreateDatabase(t)
			l := newLocker(t, mustParse(t, raw), tt.mode, db)
			checkHourly(t, l)
			if err := lockWithin(t, l, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			tt.kill(t, srv, db)
			select {
			case <-l.Lost():
			case <-time.After(30 * time.Second):
				t.Fatal("keep-alive did not notice the lost connection")
			}
			if d := time.Since(killed); d > 5*time.Second {
				t.Errorf("noticed %v after the kill, want at once", d)
			}
			if e := lostError(t, l); !e.Definite {
				t.Errorf("Definite = false for a killed session: %v", e)
			}
		})
	}
}

func terminatePG(t *testing.T, srv *testdb.Server, db string) {
	n := srv.QueryInt(t, "", fmt.Sprintf(
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'migrun' AND datname = '%s'", db))
	if n != 1 {
		t.Fatalf("terminated %d lock backends, want 1", n)
	}
}

// TestMariaDBLongName: a name too long for MySQL is held under its
// 64-character form, and still excludes a runner using the same name.
func TestMariaDBLongName(t *testing.T) {
	srv := testdb.MariaDB(t)
	_, raw := srv.CreateDatabase(t)
	u := mustParse(t, raw)
	name := strings.Repeat("very_long_application_name_", 4)
	l := newLocker(t, u, ModeSession, name)
	if err := lockWithin(t, l, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	cut := mysqlLockName(name)
	if len(cut) != maxLockName {
		t.Fatalf("lock name %q is %d bytes, want %d", cut, len(cut), maxLockName)
	}
	if n := srv.QueryInt(t, "", fmt.Sprintf("SELECT IS_USED_LOCK('%s') IS NOT NULL", cut)); n != 1 {
		t.Fatalf("no lock held under the name %q", cut)
	}
	if err := lockWithin(t, newLocker(t, u, ModeSession, name), 300*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second Lock() with the same long name = %v, want ErrTimeout", err)
	}
}

func TestUnavailable(t *testing.T) {
	pg, my := testdb.Postgres(t), testdb.MariaDB(t)
	wrong := func(s *testdb.Server) string {
		return strings.Replace(s.URL("migrun"), ":"+s.Password()+"@", ":Wr0ngPassword@", 1)
	}
	tests := []struct {
		name, raw string
		timeout   time.Duration
	}{
		{"closed port", "postgres://u:Wr0ngPassword@127.0.0.1:1/db", time.Second},
		{"closed port mysql", "mysql2://u:Wr0ngPassword@127.0.0.1:1/db", time.Second},
		// A refusal is final. Were it retried for the connect timeout, the
		// context's (shorter) deadline would end Lock with ErrTimeout.
		{"wrong password", wrong(pg), time.Hour},
		{"wrong password mysql", wrong(my), time.Hour},
		{"missing database", strings.Replace(pg.URL("migrun"), "/migrun", "/nosuchdb", 1), time.Hour},
		{"tls required, not offered", pg.URL("migrun") + "?sslmode=require", time.Hour},
		{"tls required, not offered mysql", my.URL("migrun") + "?ssl_mode=required", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := New(mustParse(t, tt.raw), Options{Name: "x", ConnectTimeout: tt.timeout, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			err = lockWithin(t, l, 30*time.Second)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Lock() = %v, want ErrUnavailable", err)
			}
			for _, secret := range []string{"Wr0ngPassword", pg.Password(), my.Password()} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a password: %v", err)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	pg := mustParse(t, "postgres://h/db")
	my := mustParse(t, "mysql2://h/db")
	tests := []struct {
		name string
		u    *dburl.URL
		opts Options
		ok   bool
	}{
		{"none needs no URL", nil, Options{Mode: ModeNone}, true},
		{"session", pg, Options{Name: "db"}, true},
		{"transaction on mysql", my, Options{Name: "db", Mode: ModeTransaction}, false},
		{"empty name", pg, Options{}, false},
		{"no URL", nil, Options{Name: "db"}, false},
		{"unknown mode", pg, Options{Name: "db", Mode: "table"}, false},
		{"no room between keep-alive and fence", pg, Options{Name: "db", KeepAlive: 10 * time.Second, DeadHolderTimeout: 30 * time.Second}, false},
		{"default dead-holder timeout fits", pg, Options{Name: "db", KeepAlive: 10 * time.Second}, true},
		{"file lock has no fence", mustParse(t, "sqlite3:db.sqlite3"), Options{Name: "db", KeepAlive: 10 * time.Second, DeadHolderTimeout: time.Second}, true},
	}
	for _, tt := range tests {
		_, err := New(tt.u, tt.opts)
		if (err == nil) != tt.ok {
			t.Errorf("%s: New() = %v", tt.name, err)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v is not ErrUnsupported", tt.name, err)
		}
	}
}

func TestMySQLLockName(t *testing.T) {
	long := strings.Repeat("é", 60)
	tests := []string{"app_production", strings.Repeat("a", 57), strings.Repeat("a", 58), long, long + "x"}
	seen := map[string]bool{}
	for _, name := range tests {
		got := mysqlLockName(name)
		if len(got) > maxLockName || !strings.HasPrefix(got, "migrun:") {
			t.Errorf("mysqlLockName(%q) = %q (%d bytes)", name, got, len(got))
		}
		if seen[got] {
			t.Errorf("mysqlLockName(%q) = %q collides", name, got)
		}
		seen[got] = true
	}
}

func TestMajorVersion(t *testing.T) {
	for v, want := range map[string]int{"15.13 (Debian 15.13-0+deb12u1)": 15, "9.6.24": 9, "17beta1": 17, "": 0, "x": 0} {
		if got := majorVersion(v); got != want {
			t.Errorf("majorVersion(%q) = %d, want %d", v, got, want)
		}
	}
}

// TestRefusedSetting: only a server that will never take the lock
// session's settings makes it go on without them; a cancelled statement
// (the role's statement_timeout on a slow machine) is tried again.
func TestRefusedSetting(t *testing.T) {
	for code, want := range map[string]bool{
		"42704": true,  // unrecognized configuration parameter
		"42501": true,  // permission denied to set parameter
		"22023": true,  // invalid value for parameter
		"55P02": true,  // cannot be changed now
		"0A000": true,  // not supported (a proxy)
		"57014": false, // canceling statement due to statement timeout
		"57P01": false, // terminating connection due to administrator command
		"40001": false, // serialization failure
		"53300": false, // too many connections
		"08006": false, // connection failure
	} {
		if got := refusedSetting(code); got != want {
			t.Errorf("refusedSetting(%s) = %t, want %t", code, got, want)
		}
	}
}

// TestCancelledStatementReconnects: a lock statement cancelled by the
// role's statement_timeout (57014) while waiting is a passing thing: the
// waiter drops the connection (freeing anything the cancelled statement
// took) and tries again on a new one, which resends the session's settings;
// it is neither a lost server (no takeover guard) nor a refusal (no exit).
// Any other error the server answers with still ends the wait.
func TestCancelledStatementReconnects(t *testing.T) {
	_, raw := testdb.Postgres(t).CreateDatabase(t)
	for _, tt := range []struct {
		code  string
		fatal bool
	}{{queryCanceled, false}, {"42501", true}} {
		l, err := New(mustParse(t, raw), Options{Name: "cancelled", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		p := l.(*pgLocker)
		p.budget = newBudget(time.Minute, "test")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := p.connect(ctx); err != nil {
			t.Fatal(err)
		}
		err = p.dropBroken(&pgconn.PgError{Code: tt.code, Message: "canceling statement due to statement timeout"})
		cancel()
		if (err != nil) != tt.fatal {
			t.Errorf("SQLSTATE %s: dropBroken = %v, want fatal %t", tt.code, err, tt.fatal)
		}
		if p.conn != nil || p.lostConn {
			t.Errorf("SQLSTATE %s: connection kept (%t) or taken for a lost server (%t)", tt.code, p.conn != nil, p.lostConn)
		}
	}
}
