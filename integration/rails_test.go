package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrun/migrun/internal/railsapp"
)

// railsApp returns a fresh copy of the test Rails app, bundled offline.
var railsApp = railsapp.New

// addMigration writes a migration into the app.
func addMigration(t *testing.T, app, version, name, body string) {
	t.Helper()
	var class strings.Builder
	for _, word := range strings.Split(name, "_") {
		if word != "" {
			class.WriteString(strings.ToUpper(word[:1]) + word[1:])
		}
	}
	src := fmt.Sprintf("class %s < ActiveRecord::Migration[6.1]\n%s\nend\n", class.String(), body)
	path := filepath.Join(app, "db", "migrate", version+"_"+name+".rb")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runTogether starts every invocation at once and waits for all; each must
// exit 0. It returns how many printed marker on stdout.
func runTogether(t *testing.T, invs []invocation, marker string) int {
	t.Helper()
	results := runConcurrently(t, invs...)
	assertSucceeded(t, results)
	n := 0
	for _, res := range results {
		if strings.Contains(res.stdout, marker) {
			n++
		}
	}
	return n
}

func railsEnv(url string) map[string]string {
	return map[string]string{"DATABASE_URL": url, "RAILS_ENV": "production"}
}

func TestRailsMigrate(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			_, url := srv.CreateDatabase(t)
			inv := invocation{dir: app, env: railsEnv(url)}

			first := inv.run(t)
			if first.status != 0 {
				t.Fatalf("first run exited %d:\n%s%s", first.status, first.stdout, first.stderr)
			}
			for _, want := range []string{"20240101000000 CreateUsers: migrated", "20240102000000 AddIndexToUsersEmail: migrated"} {
				if !strings.Contains(first.stdout, want) {
					t.Errorf("first run's stdout lacks %q:\n%s", want, first.stdout)
				}
			}
			if !strings.Contains(first.termination, "migrations: 20240101000000 CreateUsers migrated; 20240102000000 AddIndexToUsersEmail migrated;") {
				t.Errorf("termination log lacks the migrations:\n%s", first.termination)
			}

			second := inv.run(t)
			if second.status != 0 {
				t.Fatalf("second run exited %d:\n%s%s", second.status, second.stdout, second.stderr)
			}
			if !strings.Contains(second.termination, "No DB migration") || strings.Contains(second.termination, "migrations:") {
				t.Errorf("second run should report No DB migration:\n%s", second.termination)
			}
			assertNoSecret(t, srv.Password(), first, second)
		})
	}
}

func TestRailsConcurrentRunners(t *testing.T) {
	const runners = 8
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, url := srv.CreateDatabase(t)
			invs := make([]invocation, runners)
			for i := range invs {
				invs[i] = invocation{dir: railsApp(t), env: railsEnv(url)}
			}
			if applied := runTogether(t, invs, "CreateUsers: migrated"); applied != 1 {
				t.Errorf("%d runners applied the migration, want exactly 1", applied)
			}
		})
	}
}

func TestRailsFailingMigration(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			addMigration(t, app, "20240301000000", "explode", `  def up
    raise "kaboom: the \"quoted\" <!channel> failure"
  end`)
			_, url := srv.CreateDatabase(t)
			res := invocation{dir: app, env: railsEnv(url)}.run(t)
			if res.status != 1 {
				t.Fatalf("exit status %d, want 1:\n%s%s", res.status, res.stdout, res.stderr)
			}
			// Both streams go live to migrun's stdout, in order.
			if !strings.Contains(res.stdout, "kaboom") {
				t.Errorf("the Rails error did not reach the live output:\n%s", res.stdout)
			}
			for _, want := range []string{"failed (exit 1)", "kaboom", "StandardError"} {
				if !strings.Contains(res.termination, want) {
					t.Errorf("termination log lacks %q:\n%s", want, res.termination)
				}
			}
			// The migrations before the failing one were applied and reported.
			if !strings.Contains(res.termination, "20240101000000 CreateUsers migrated") {
				t.Errorf("termination log lacks the applied migrations:\n%s", res.termination)
			}
		})
	}
}

// TestRailsConcurrentIndexWithWaiters: the holder's CREATE INDEX
// CONCURRENTLY waits for the end of every transaction that had a snapshot
// when it looked; runners waiting for the lock must hold none, nor the
// holder's own session (in transaction mode an open transaction for the
// whole run), or the migration would hang. The holder confirms its lock
// every millisecond, on a server whose thousands of locks make a read of
// pg_locks take milliseconds.
func TestRailsConcurrentIndexWithWaiters(t *testing.T) {
	const waiters = 3
	srv := servers(t)["postgresql"]
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			_, url := srv.CreateDatabase(t)
			busy := namedPgConn(t, url, "busy")
			pgExec(t, busy, "SELECT pg_advisory_lock(1, g) FROM generate_series(1, 5000) g")
			app := railsApp(t)
			// Before building the index, wait until the other runners are connected
			// and waiting for the lock (each migrun holds one connection named
			// "migrun <host> <pid>"; the command's own are "migrun command ...").
			// Outside a transaction: pg_stat_activity is read once per transaction.
			addMigration(t, app, "20240101500000", "wait_for_waiters", fmt.Sprintf(`  disable_ddl_transaction!

  def up
    deadline = Time.now + 60
    until select_value("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'migrun %%' AND application_name NOT LIKE 'migrun command %%'").to_i >= %d
      raise "waiters never arrived" if Time.now > deadline
      sleep 0.05
    end
  end`, waiters+1))
			env := railsEnv(url)
			env["MIGRUN_LOCK_MODE"] = mode
			env["MIGRUN_KEEPALIVE_INTERVAL"] = "1ms"
			invs := make([]invocation, waiters+1)
			for i := range invs {
				invs[i] = invocation{dir: app, env: env}
			}
			if indexed := runTogether(t, invs, "AddIndexToUsersEmail: migrated"); indexed != 1 {
				t.Errorf("%d runners built the index, want 1", indexed)
			}
		})
	}
}

// TestRailsOutputOrder: a failing Rails migration's lines (stdout) and
// Rails' error (stderr) are captured in the order Rails wrote them, every
// time: both streams share one pipe, and Ruby's stdout is unbuffered under
// migrun. The captured copy is read where people read it, in Slack.
func TestRailsOutputOrder(t *testing.T) {
	const runs = 4
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			addMigration(t, app, "20240301000000", "explode", `  def up
    say "step one"
    say "step two"
    raise "kaboom"
  end`)
			_, url := srv.CreateDatabase(t)
			for run := range runs {
				rc, hook := newSlackReceiver(t)
				env := railsEnv(url)
				env["SLACK_WEBHOOK_URL"] = hook
				res := invocation{dir: app, env: env}.run(t)
				msgs, _ := rc.all()
				if res.status != 1 || len(msgs) != 1 {
					t.Fatalf("run %d: exit %d, %d messages:\n%s", run, res.status, len(msgs), res.stderr)
				}
				text := msgs[0].Text
				order := []string{"Explode: migrating", "-- step one", "-- step two", "rails aborted!", "kaboom"}
				last, prev := -1, "the start"
				for _, line := range order {
					i := strings.Index(text, line)
					if i <= last {
						t.Fatalf("run %d: %q is not after %q in the captured output:\n%s", run, line, prev, text)
					}
					last, prev = i, line
				}
			}
		})
	}
}
