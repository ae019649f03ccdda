package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// Issue 14 end to end: a migration never takes production down while it
// waits. These run the migrun binary with MIGRUN_DDL_LOCK_TIMEOUT and
// MIGRUN_RETRIES; the rows that need the retry loop in cmd/migrun (attempts
// retried, the blocker and the decision's reason in the result) fail
// until it is wired.

// blockerHolds is how long the blocker keeps its transaction open once
// the migration waits behind it.
const blockerHolds = 8 * time.Second

// ddlCase is a migration behind a blocker, with the app's traffic probed.
type ddlCase struct {
	srv     *testdb.Server
	app     string
	db, url string
	blocker *blocker
	slack   *slackReceiver
	results *resultReceiver
	env     map[string]string
}

// newDDLCase migrates the app, adds a migration with body, and starts a
// session holding a transaction that read users.
func newDDLCase(t *testing.T, srv *testdb.Server, body string, settings ...string) *ddlCase {
	t.Helper()
	c := &ddlCase{srv: srv, app: railsApp(t)}
	c.db, c.url = srv.CreateDatabase(t)
	if res := (invocation{dir: c.app, env: railsEnv(c.url)}).run(t); res.status != 0 {
		t.Fatalf("migrating the app first: exit %d:\n%s", res.status, res.stderr)
	}
	addMigration(t, c.app, "20240301000000", "add_nickname_to_users", body)
	c.blocker = blockTable(t, srv, c.url, "users")
	var hook, results string
	c.slack, hook = newSlackReceiver(t)
	c.results, results = newResultReceiver(t)
	c.env = with(railsEnv(c.url), append([]string{"SLACK_WEBHOOK_URL", hook, "MIGRUN_WEBHOOK_URL", results}, settings...)...)
	return c
}

const addNicknameToUsers = "  def change\n    add_column :users, :nickname, :string\n  end"

// TestDDLNeverBlocksProduction: another session's transaction has read
// users while a migration adds a column to it, and the app's traffic
// (a probe querying users every 100 ms) queues behind the ALTER. Without
// a DDL lock timeout the probe is blocked for about as long as the
// blocker holds on (the control); with MIGRUN_DDL_LOCK_TIMEOUT=1s never
// much longer than a second: each attempt gives up, is retried, and the
// migration succeeds once the blocker is gone. The attempts and the
// blocker are in the result and in Slack (needs the retry loop).
func TestDDLNeverBlocksProduction(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			for _, timeout := range []bool{false, true} {
				name := "control: no DDL lock timeout"
				if timeout {
					name = "MIGRUN_DDL_LOCK_TIMEOUT=1s"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					var settings []string
					if timeout {
						settings = []string{"MIGRUN_DDL_LOCK_TIMEOUT", "1s", "MIGRUN_RETRIES", "20"}
					}
					c := newDDLCase(t, srv, addNicknameToUsers, settings...)
					watch := watcher(t, c)
					probe := startProbe(t, srv, c.url, "users")
					run := invocation{dir: c.app, env: c.env}.start(t)
					waitFor(t, "the migration's ALTER to wait behind the blocker", timeoutLong, watch)
					time.Sleep(blockerHolds) // the blocker's long transaction, not a synchronisation
					c.blocker.release()
					res := run.waitWithin(t, 3*time.Minute)
					worst, probes := probe.result()
					t.Logf("exit %d; the probe's worst latency %s over %d queries\n%s", res.status, worst.Round(time.Millisecond), probes, res.stderr)

					if res.status != 0 {
						t.Fatalf("migrun exited %d, want 0:\n%s\n%s", res.status, res.stderr, res.stdout)
					}
					if !timeout {
						if worst < blockerHolds*3/4 {
							t.Errorf("control: the probe's worst latency is %s; the ALTER should have queued it behind the %s blocker", worst, blockerHolds)
						}
						return
					}
					if worst > 3*time.Second {
						t.Errorf("the probe was blocked for %s with a 1s DDL lock timeout", worst)
					}
					doc := c.results.last(t)
					if n := len(attempts(doc)); n < 2 {
						t.Errorf("%d attempts in the result, want the failed ones and the last that succeeded", n)
					}
					assertNamesBlocker(t, c, res)
				})
			}
		})
	}
}

// TestDDLRetriesExhausted: a blocker that outlasts every attempt: exit 1,
// every attempt in the result, the blocker named.
func TestDDLRetriesExhausted(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			c := newDDLCase(t, srv, addNicknameToUsers, "MIGRUN_DDL_LOCK_TIMEOUT", "1s", "MIGRUN_RETRIES", "2")
			res := invocation{dir: c.app, env: c.env}.start(t).waitWithin(t, 3*time.Minute)
			t.Logf("exit %d:\n%s\ntermination log:\n%s", res.status, res.stderr, res.termination)
			if res.status != 1 {
				t.Errorf("migrun exited %d, want 1", res.status)
			}
			doc := c.results.last(t)
			if n := len(attempts(doc)); n != 3 {
				t.Errorf("%d attempts in the result, want 3 (the first and two retries): %v", n, attempts(doc))
			}
			assertNamesBlocker(t, c, res)
		})
	}
}

// TestDDLNotRetried: failures a rerun would not fix, or would make worse,
// are run once, the reason said.
func TestDDLNotRetried(t *testing.T) {
	pg, maria := testdb.Postgres(t), testdb.MariaDB(t)
	tests := []struct {
		name   string
		srv    *testdb.Server
		setup  func(t *testing.T, srv *testdb.Server) (app string, env map[string]string)
		result []string // in the termination log, the log or Slack
	}{
		{name: "postgresql: not a lock timeout", srv: pg, setup: failingMigration},
		{name: "mariadb: not a lock timeout", srv: maria, setup: failingMigration},
		{name: "postgresql: a cancelled CREATE INDEX CONCURRENTLY", srv: pg, setup: concurrentIndexBehindSnapshot,
			result: []string{"index_users_on_email", "DROP INDEX CONCURRENTLY public.index_users_on_email;"}},
		{name: "mariadb: a statement completed before the timeout", srv: maria, setup: completedThenBlocked,
			result: []string{"completed 1 statement", "create_table(:things)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app, env := tt.setup(t, tt.srv)
			rc, results := newResultReceiver(t)
			slack, hook := newSlackReceiver(t)
			env = with(env, "MIGRUN_DDL_LOCK_TIMEOUT", "1s", "MIGRUN_RETRIES", "3", "MIGRUN_WEBHOOK_URL", results, "SLACK_WEBHOOK_URL", hook)
			res := invocation{dir: app, env: env}.start(t).waitWithin(t, 3*time.Minute)
			t.Logf("exit %d:\n%s\ntermination log:\n%s", res.status, res.stderr, res.termination)
			if res.status != 1 {
				t.Errorf("migrun exited %d, want 1", res.status)
			}
			if n := len(attempts(rc.last(t))); n != 1 {
				t.Errorf("%d attempts, want exactly one", n)
			}
			_, raw := slack.all()
			for _, want := range tt.result {
				if !strings.Contains(res.termination, want) || !strings.Contains(raw, want) {
					t.Errorf("the termination log and Slack should say %q (needs the retry loop's wiring)", want)
				}
			}
		})
	}
}

// failingMigration: a migration that raises, nothing blocked.
func failingMigration(t *testing.T, srv *testdb.Server) (string, map[string]string) {
	app := railsApp(t)
	_, url := srv.CreateDatabase(t)
	addMigration(t, app, "20240301000000", "explode", "  def up\n    raise \"boom\"\n  end")
	return app, railsEnv(url)
}

// concurrentIndexBehindSnapshot: the app's CREATE INDEX CONCURRENTLY
// behind a transaction older than it (on any table): lock_timeout cancels
// its wait and leaves the index invalid.
func concurrentIndexBehindSnapshot(t *testing.T, srv *testdb.Server) (string, map[string]string) {
	app := railsApp(t)
	_, url := srv.CreateDatabase(t)
	b := holdSnapshot(t, url)
	t.Cleanup(b.release)
	return app, railsEnv(url)
}

// completedThenBlocked: on MariaDB, a migration whose first statement
// completes and whose second waits behind a blocker on users.
func completedThenBlocked(t *testing.T, srv *testdb.Server) (string, map[string]string) {
	app := railsApp(t)
	_, url := srv.CreateDatabase(t)
	if res := (invocation{dir: app, env: railsEnv(url)}).run(t); res.status != 0 {
		t.Fatalf("migrating the app first: exit %d:\n%s", res.status, res.stderr)
	}
	addMigration(t, app, "20240301000000", "add_things", "  def change\n    create_table :things\n    add_column :users, :nickname, :string\n  end")
	b := blockTable(t, srv, url, "users")
	t.Cleanup(b.release)
	return app, railsEnv(url)
}

// assertNamesBlocker: the blocker's pid (PostgreSQL: and name) is in the
// termination log and in Slack.
func assertNamesBlocker(t *testing.T, c *ddlCase, res result) {
	t.Helper()
	want := []string{strconv.FormatInt(c.blocker.pid, 10)}
	if c.srv.Kind() == testdb.KindPostgreSQL {
		want = append(want, blockerName)
	}
	_, raw := c.slack.all()
	for _, w := range want {
		if !strings.Contains(res.termination, w) {
			t.Errorf("the termination log does not name the blocker (%s):\n%s", w, res.termination)
		}
		if !strings.Contains(raw, w) {
			t.Errorf("Slack does not name the blocker (%s):\n%s", w, raw)
		}
	}
}

// watcher reports whether the migration's ALTER waits, from a session of
// the app's own account.
func watcher(t *testing.T, c *ddlCase) func() bool {
	if c.srv.Kind() == testdb.KindPostgreSQL {
		conn := pgConn(t, c.url)
		return func() bool { return ddlWaiting(t, c.srv, c.db, conn, nil) }
	}
	conn := myConn(t, c.url)
	return func() bool { return ddlWaiting(t, c.srv, c.db, nil, conn) }
}
