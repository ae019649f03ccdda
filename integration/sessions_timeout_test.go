package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/sessions"
)

// ddlLockTimeout is MIGRUN_DDL_LOCK_TIMEOUT in these tests.
const ddlLockTimeout = 2 * time.Second

// lockTimeoutCase is a migration adding a column to accounts while
// another session's transaction has read accounts.
type lockTimeoutCase struct {
	name     string
	settings sessions.Settings
	app, url string
	env      map[string]string
	rails    *railsRun
	started  time.Time
}

// TestSessionsLockTimeout: a migration's ALTER TABLE behind a long
// transaction that read the table gives up after the DDL lock timeout, with an
// error Rails prints as ActiveRecord::LockWaitTimeout; without the setting
// the same migration still waits (queueing every query on the table
// behind it) and completes only once the transaction ends.
func TestSessionsLockTimeout(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cases := []*lockTimeoutCase{
				{name: "with the lock timeout", settings: sessions.Settings{LockTimeout: ddlLockTimeout}},
				{name: "control: without"},
			}
			var releases []func()
			for _, c := range cases {
				c.app = railsApp(t)
				_, c.url = srv.CreateDatabase(t)
				addMigration(t, c.app, "20240301000000", "add_nickname_to_accounts", "  def change\n    add_column :accounts, :nickname, :string\n  end")
				releases = append(releases, holdAccounts(t, srv, c.url))
				var pg sessions.Postgres
				if kind == testdb.KindPostgreSQL && c.settings.LockTimeout > 0 {
					pg = probe(t, c.url)
				}
				c.env, _ = sessionsEnv(t, c.url, nil, c.settings, pg)
			}
			for _, c := range cases {
				c.started = time.Now()
				c.rails = startRails(t, c.app, c.env)
			}

			with, control := cases[0], cases[1]
			if status := with.rails.wait(t, 2*time.Minute); status != 1 {
				t.Fatalf("%s: rails exited %d, want 1:\n%s%s", with.name, status, with.rails.stdout.String(), with.rails.stderr.String())
			}
			t.Logf("%s: rails failed after %s (Rails boot included); its stderr:\n%s", with.name, time.Since(with.started).Round(100*time.Millisecond), with.rails.stderr.String())
			want := map[string][]string{
				testdb.KindPostgreSQL: {"ActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout", "Caused by:\nPG::LockNotAvailable: ERROR:  canceling statement due to lock timeout"},
				testdb.KindMariaDB:    {"ActiveRecord::LockWaitTimeout: Mysql2::Error::TimeoutError: Lock wait timeout exceeded; try restarting transaction", "Caused by:\nMysql2::Error::TimeoutError: Lock wait timeout exceeded; try restarting transaction"},
			}[kind]
			for _, w := range want {
				if !strings.Contains(with.rails.stderr.String(), w) {
					t.Errorf("%s: stderr lacks %q", with.name, w)
				}
			}

			// The control has waited as long, and waits on.
			time.Sleep(ddlLockTimeout)
			select {
			case <-control.rails.done:
				t.Fatalf("%s: rails ended while the transaction still holds accounts:\n%s%s", control.name, control.rails.stdout.String(), control.rails.stderr.String())
			default:
			}
			releases[1]()
			if status := control.rails.wait(t, 2*time.Minute); status != 0 {
				t.Errorf("%s: rails exited %d once accounts was free:\n%s%s", control.name, status, control.rails.stdout.String(), control.rails.stderr.String())
			}
		})
	}
}

// holdAccounts creates a table accounts (the app's migrations know nothing
// of it), opens a transaction that reads it and keeps that open until the
// returned release is called (or the test ends).
func holdAccounts(t *testing.T, srv *testdb.Server, url string) (release func()) {
	t.Helper()
	if srv.Kind() == testdb.KindPostgreSQL {
		conn := pgConn(t, url)
		pgExec(t, conn, "CREATE TABLE accounts (id int PRIMARY KEY)")
		pgExec(t, conn, "BEGIN")
		pgExec(t, conn, "SELECT count(*) FROM accounts")
		return once(func() { pgExec(t, conn, "COMMIT") })
	}
	conn := myConn(t, url)
	myExec(t, conn, "CREATE TABLE accounts (id int PRIMARY KEY)")
	myExec(t, conn, "START TRANSACTION")
	myExec(t, conn, "SELECT COUNT(*) FROM accounts")
	return once(func() { myExec(t, conn, "COMMIT") })
}

// once makes release callable more than once; the test's end calls it too.
func once(release func()) func() {
	done := false
	return func() {
		if !done {
			done = true
			release()
		}
	}
}

// TestSessionsLockTimeoutFailsConcurrentIndex: PostgreSQL's lock_timeout
// also bounds CREATE INDEX CONCURRENTLY's wait for older transactions (any
// transaction in the database, on any table). The app's own
// AddIndexToUsersEmail fails behind a transaction older than the timeout,
// and leaves an INVALID index behind that makes every later run fail.
func TestSessionsLockTimeoutFailsConcurrentIndex(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	app := railsApp(t)
	db, url := srv.CreateDatabase(t)
	holder := pgConn(t, url)
	pgExec(t, holder, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	pgExec(t, holder, "SELECT 1") // takes the transaction's snapshot
	env, _ := sessionsEnv(t, url, nil, sessions.Settings{LockTimeout: ddlLockTimeout}, probe(t, url))

	status, stdout, stderr := migrate(t, app, env)
	t.Logf("first run exited %d:\n%s%s", status, stdout, stderr)
	if status != 1 || !strings.Contains(stderr, "canceling statement due to lock timeout") || !strings.Contains(stdout, "CreateUsers: migrated") {
		t.Fatalf("CREATE INDEX CONCURRENTLY should have failed on the lock timeout after CreateUsers")
	}
	invalid := "SELECT count(*) FROM pg_index WHERE indexrelid = 'index_users_on_email'::regclass AND NOT indisvalid"
	if n := srv.QueryInt(t, db, invalid); n != 1 {
		t.Errorf("%d invalid index_users_on_email, want the failed build's leftover", n)
	}

	pgExec(t, holder, "COMMIT")
	status, stdout, stderr = migrate(t, app, env)
	t.Logf("second run, nothing holding anything, exited %d:\n%s%s", status, stdout, stderr)
	if status != 1 || !strings.Contains(stderr, `relation "index_users_on_email" already exists`) {
		t.Errorf("the second run should fail on the leftover invalid index")
	}
}

// TestSessionsLiveIdleMigrationSurvives: a live migration that spends
// longer than the dead-client bound in Ruby between two statements
// succeeds on both servers with migrun's settings. PostgreSQL's keepalives
// are answered by the live client's kernel. On MySQL the only per-session
// route, wait_timeout, cannot tell a dead client from a busy one (the
// control, the app's own wait_timeout: the migration loses its connection),
// so migrun sets none there.
func TestSessionsLiveIdleMigrationSurvives(t *testing.T) {
	const d = 5 * time.Second
	type row struct {
		kind, name, query string
		settings          sessions.Settings
		survives          bool
	}
	rows := []row{
		{kind: testdb.KindPostgreSQL, name: "migrun's settings", settings: sessions.Settings{DeadClientTimeout: d}, survives: true},
		{kind: testdb.KindMariaDB, name: "migrun's settings", settings: sessions.Settings{DeadClientTimeout: d}, survives: true},
		{kind: testdb.KindMariaDB, name: "control: the app's own wait_timeout", query: "?wait_timeout=3", survives: false},
	}
	all := servers(t)
	for _, r := range rows {
		t.Run(r.kind+"/"+r.name, func(t *testing.T) {
			t.Parallel()
			srv := all[r.kind]
			app := railsApp(t)
			addMigration(t, app, "20240301000000", "slow_ruby", fmt.Sprintf(`  def up
    select_value("SELECT 1")
    sleep %d # Ruby work between two statements, e.g. a backfill computing in batches
    select_value("SELECT 2")
  end`, int((d+time.Second)/time.Second)))
			_, url := srv.CreateDatabase(t)
			var pg sessions.Postgres
			if r.kind == testdb.KindPostgreSQL {
				pg = probe(t, url)
			}
			env, _ := sessionsEnv(t, url+r.query, nil, r.settings, pg)
			status, stdout, stderr := migrate(t, app, env)
			t.Logf("rails exited %d:\n%s%s", status, stdout, stderr)
			switch {
			case r.survives && status != 0:
				t.Errorf("the live migration failed under the settings")
			case !r.survives && (status != 1 || !strings.Contains(stderr, "Mysql2::Error::ConnectionError")):
				t.Errorf("the live migration idle past wait_timeout should have lost its connection")
			}
		})
	}
}
