package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/testdb"
)

// records is a slog handler that keeps every record, for tests that
// wait on a log line rather than on time.
type records struct {
	mu      sync.Mutex
	all     []slog.Record
	changed chan struct{} // closed and replaced at each record
}

func newRecords() *records { return &records{changed: make(chan struct{})} }

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, rec.Clone())
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// attrs is a record's attributes by key.
func attrs(rec slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
	return m
}

// matching is the records with message msg, in order.
func (r *records) matching(msg string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.all {
		if rec.Message == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitCount blocks until n records with message msg have been logged,
// and returns them; the test fails if that takes longer than a minute
// (a guard, not the synchronisation).
func (r *records) waitCount(t *testing.T, msg string, n int) []slog.Record {
	t.Helper()
	guard := time.After(time.Minute)
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if got := r.matching(msg); len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-guard:
			t.Fatalf("%d %q lines never came; got %d", n, msg, len(r.matching(msg)))
		}
	}
}

// TestWaiterReportsHolder: a waiter names the holder (its identity and,
// on PostgreSQL, what the holder's migration session is doing), repeats
// a progress line with the time waited and left, and its timeout
// error carries the last description.
func TestWaiterReportsHolder(t *testing.T) {
	for _, b := range backends() {
		if b.name == "file" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			u := b.url(t)
			opts := testOptions("app", b.mode)
			opts.Identity = "migrun holder-pod-1 4242"
			holder := newLockerWith(t, u, opts)
			if err := lockWithin(t, holder, 30*time.Second); err != nil {
				t.Fatalf("holder's Lock() = %v", err)
			}
			pg := strings.HasPrefix(b.name, "postgresql")
			if pg {
				// The holder's migration, as its command's session names it.
				cfg, err := dbconn.PostgresConfig(u)
				if err != nil {
					t.Fatal(err)
				}
				cfg.RuntimeParams["application_name"] = "migrun command holder-pod-1 4242"
				conn, err := pgx.ConnectConfig(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close(context.Background()) })
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = conn.Exec(ctx, "SELECT pg_sleep(60) /* the migration */")
				}()
				t.Cleanup(func() { cancel(); <-done })
			}

			logs := newRecords()
			wopts := testOptions("app", b.mode)
			wopts.Identity = "migrun waiter-pod 1"
			wopts.Logger = slog.New(logs)
			wopts.ProgressInterval = 200 * time.Millisecond
			wopts.CommandIdentity = func(holder string) string { return strings.Replace(holder, "migrun ", "migrun command ", 1) }
			waiter := newLockerWith(t, u, wopts)
			ctx, cancelDeadline := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancelDeadline()
			ctx, giveUp := context.WithCancelCause(ctx)
			got := make(chan error, 1)
			go func() { got <- waiter.Lock(ctx) }()

			first := logs.waitCount(t, "lock is held by another runner; waiting", 1)[0]
			// The holder's identity: PostgreSQL's application_name;
			// MariaDB shows program_name only with performance_schema
			// on (not on the test servers), so its connection and user.
			want := `"migrun holder-pod-1 4242"`
			if !pg {
				want = "user " + testdb.AppUser
			}
			h := attrs(first)["holder"].String()
			if !strings.Contains(h, want) {
				t.Errorf("first line's holder = %q, want %s", h, want)
			}
			if pg {
				// Found on the first look, or on a later one: the sleep
				// may not have started yet.
				waitHolder(t, logs, "pg_sleep(60)")
			}
			progress := logs.waitCount(t, "still waiting for the lock", 3)
			for _, rec := range progress {
				a := attrs(rec)
				if !strings.Contains(a["holder"].String(), want) {
					t.Errorf("progress line's holder = %q", a["holder"])
				}
				if a["waited"].Kind() != slog.KindDuration || a["left"].Kind() != slog.KindDuration {
					t.Errorf("progress line without waited and left durations: %v", a)
				} else if left := a["left"].Duration(); left <= 4*time.Minute || left > 5*time.Minute {
					t.Errorf("left = %s, want the rest of the 5m deadline", left)
				}
			}
			if len(logs.matching("lock is held by another runner; waiting")) != 1 {
				t.Errorf("the first line came more than once")
			}

			giveUp(ErrTimeout) // the lock timeout, as cmd sets it
			err := <-got
			var te *TimeoutError
			if !errors.As(err, &te) || !errors.Is(err, ErrTimeout) {
				t.Fatalf("Lock() = %v, want a *TimeoutError wrapping ErrTimeout", err)
			}
			if !strings.Contains(te.Holder, want) || !strings.Contains(err.Error(), "held by") {
				t.Errorf("timeout error %q does not name the holder", err)
			}
			if pg && !strings.Contains(te.Holder, "its migration session: pid") {
				t.Errorf("timeout error's holder %q does not describe the migration session", te.Holder)
			}
		})
	}
}

// waitHolder waits for a line whose holder contains want.
func waitHolder(t *testing.T, logs *records, want string) {
	t.Helper()
	for n := 1; ; n++ {
		recs := logs.waitCount(t, "still waiting for the lock", n)
		if h := attrs(recs[n-1])["holder"].String(); strings.Contains(h, want) {
			return
		}
		if n > 200 {
			t.Fatalf("no holder line contains %q", want)
		}
	}
}

// TestWaiterWithoutPrivileges: an account that may not see other
// sessions' details says so once, still names the holder as far as it
// can, and waits and acquires as ever.
func TestWaiterWithoutPrivileges(t *testing.T) {
	for _, kind := range []string{testdb.KindPostgreSQL, testdb.KindMariaDB} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var srv *testdb.Server
			if kind == testdb.KindPostgreSQL {
				srv = testdb.Postgres(t)
			} else {
				srv = testdb.MariaDB(t)
			}
			db, raw := srv.CreateDatabase(t)
			u := mustParse(t, raw)
			opts := testOptions("app", ModeSession)
			opts.Identity = "migrun holder-pod-2 77"
			holder := newLockerWith(t, u, opts)
			if err := lockWithin(t, holder, 30*time.Second); err != nil {
				t.Fatalf("holder's Lock() = %v", err)
			}

			other := lesserAccount(t, srv, db, raw)
			logs := newRecords()
			wopts := testOptions("app", ModeSession)
			wopts.Logger = slog.New(logs)
			wopts.ProgressInterval = 100 * time.Millisecond
			waiter := newLockerWith(t, mustParse(t, other), wopts)
			got := make(chan error, 1)
			go func() { got <- lockWithin(t, waiter, 5*time.Minute) }()

			first := logs.waitCount(t, "lock is held by another runner; waiting", 1)[0]
			h := attrs(first)["holder"].String()
			if !strings.Contains(h, "details hidden from this account") {
				t.Errorf("holder = %q, want it to say the details are hidden", h)
			}
			if kind == testdb.KindPostgreSQL && !strings.Contains(h, "migrun holder-pod-2 77") {
				// application_name is shown to every role.
				t.Errorf("holder = %q, want the holder's identity", h)
			}
			logs.waitCount(t, "still waiting for the lock", 3)
			said := 0
			logs.mu.Lock()
			for _, rec := range logs.all {
				if strings.Contains(rec.Message, "cannot see other sessions") {
					said++
				}
			}
			logs.mu.Unlock()
			if said != 1 {
				t.Errorf("the account's limits were said %d times, want once", said)
			}

			if err := holder.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatalf("waiter's Lock() = %v, want the lock", err)
			}
		})
	}
}

// lesserAccount makes a login that may use database db and nothing
// more (it cannot see other accounts' sessions), dropped at the test's
// end; it returns raw with that login.
func lesserAccount(t *testing.T, srv *testdb.Server, db, raw string) string {
	t.Helper()
	name := "t_lesser_" + strings.TrimPrefix(db, "t_")
	password := "pw" + name
	if srv.Kind() == testdb.KindPostgreSQL {
		srv.Exec(t, "", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", name, password))
		t.Cleanup(func() { srv.Exec(t, "", "DROP ROLE IF EXISTS "+name) })
	} else {
		srv.Exec(t, "", fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", name, password))
		srv.Exec(t, "", fmt.Sprintf("GRANT SELECT ON %s.* TO '%s'@'%%'", db, name))
		t.Cleanup(func() { srv.Exec(t, "", fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", name)) })
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

func TestHolderString(t *testing.T) {
	h := holder{id: 4242, identity: "migrun web-1 7", user: "app", client: "10.0.0.5", since: "connected 5m3s ago", hint: postgresHint,
		migration: `pid 4250, active for 4m58s, waiting for Lock:relation, query "CREATE INDEX"`}
	want := `"migrun web-1 7" (pid 4242, user app, client 10.0.0.5, connected 5m3s ago); its migration session: pid 4250, active for 4m58s, waiting for Lock:relation, query "CREATE INDEX"`
	if got := h.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	hidden := holder{id: 12, hidden: true, hint: mysqlHint}
	if got, want := hidden.String(), "connection 12 (details hidden from this account)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (&TimeoutError{}).Error(); got != ErrTimeout.Error() {
		t.Errorf("TimeoutError without a holder = %q", got)
	}
}

// TestInspect: Inspect reports the server and the lock, free or held
// (and by whom), without taking it; an unreachable server is
// ErrUnavailable.
func TestInspect(t *testing.T) {
	for _, b := range backends() {
		if b.name == "file" || b.mode == ModeTransaction {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			u := b.url(t)
			opts := testOptions("app", b.mode)
			got, err := Inspect(context.Background(), u, opts)
			if err != nil || got.Server == "" || got.Held || got.Holder != "" {
				t.Fatalf("Inspect(free) = %+v, %v", got, err)
			}
			hopts := testOptions("app", b.mode)
			hopts.Identity = "migrun holder-pod-3 9"
			holder := newLockerWith(t, u, hopts)
			if err := lockWithin(t, holder, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			got, err = Inspect(context.Background(), u, opts)
			if err != nil || !got.Held || !strings.Contains(got.Holder, "pid ") && !strings.Contains(got.Holder, "connection ") {
				t.Fatalf("Inspect(held) = %+v, %v", got, err)
			}
			if strings.HasPrefix(b.name, "postgresql") && !strings.Contains(got.Holder, `"migrun holder-pod-3 9"`) {
				t.Errorf("holder = %q, want its identity", got.Holder)
			}
			// Looking took nothing: the holder still holds it, and after
			// it lets go, another runner gets it at once.
			assertNotLost(t, holder)
			if err := holder.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := lockWithin(t, newLocker(t, u, b.mode, "app"), 30*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
	closed := mustParse(t, "postgres://u:pw@127.0.0.1:1/db")
	if _, err := Inspect(context.Background(), closed, testOptions("app", ModeSession)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Inspect(unreachable) = %v, want ErrUnavailable", err)
	}
	if _, err := Inspect(context.Background(), mustParse(t, "sqlite3:db.sqlite3"), testOptions("app", ModeSession)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Inspect(sqlite3) = %v, want ErrUnsupported", err)
	}
}

// TestWaitReportDescribeFails: a holder that cannot be described is said
// once, the progress lines go on without it, and the timeout error says
// nothing it does not know.
func TestWaitReportDescribeFails(t *testing.T) {
	logs := newRecords()
	w := newWaitReport(Options{Logger: slog.New(logs), ProgressInterval: time.Nanosecond}, "the lock")
	if w.untilNext() != 0 {
		t.Errorf("untilNext before the first line = %s, want 0", w.untilNext())
	}
	calls := 0
	failing := func(context.Context) (holder, bool, error) {
		calls++
		return holder{}, false, errors.New("permission denied")
	}
	for range 3 {
		w.held(context.Background(), failing)
	}
	if calls != 3 || len(logs.matching("lock is held by another runner; waiting")) != 1 || len(logs.matching("still waiting for the lock")) != 2 {
		t.Errorf("%d looks, %d records", calls, len(logs.all))
	}
	if n := len(logs.matching("cannot find out who holds the lock; waiting all the same")); n != 1 {
		t.Errorf("the failure was said %d times, want once", n)
	}
	for _, rec := range logs.all {
		if _, ok := attrs(rec)["holder"]; ok {
			t.Errorf("%q names a holder it does not know", rec.Message)
		}
	}
	var te *TimeoutError
	if err := w.outcome(ErrTimeout); !errors.As(err, &te) || te.Holder != "" || err.Error() != ErrTimeout.Error() {
		t.Errorf("outcome(ErrTimeout) = %v", err)
	}
	if err := w.outcome(ErrUnavailable); err != ErrUnavailable {
		t.Errorf("outcome(ErrUnavailable) = %v", err)
	}
	if w.untilNext() < 50*time.Millisecond {
		t.Errorf("untilNext = %s, want at least a little", w.untilNext())
	}
}
