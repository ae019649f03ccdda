package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWait: `migrun wait` blocks while migrations are pending (here: no
// schema_migrations table at all) and returns once db:migrate has run.
func TestWait(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			_, url := srv.CreateDatabase(t)
			env := railsEnv(url)
			env["MIGRUN_WAIT_TIMEOUT"] = "5m"
			waiter := invocation{dir: app, env: env, args: []string{"wait"}}.start(t)
			waitFor(t, "wait to report pending migrations", timeoutLong, func() bool {
				return strings.Contains(waiter.stderr.String(), "waiting for migrations")
			})
			if !strings.Contains(waiter.stderr.String(), "20240101000000, 20240102000000") {
				t.Errorf("wait does not name the pending versions:\n%s", waiter.stderr.String())
			}
			if res := (invocation{dir: app, env: railsEnv(url)}).run(t); res.status != 0 {
				t.Fatalf("migrate exited %d:\n%s", res.status, res.stderr)
			}
			res := waiter.wait(t)
			if res.status != 0 || !strings.Contains(res.stderr, "no migration pending") {
				t.Fatalf("wait exited %d:\n%s", res.status, res.stderr)
			}
			assertNoSecret(t, srv.Password(), res)
		})
	}
}

func TestWaitTimeoutAndUnreachable(t *testing.T) {
	srv := servers(t)["postgresql"]
	app := railsApp(t)
	_, url := srv.CreateDatabase(t)
	env := railsEnv(url)
	env["MIGRUN_WAIT_TIMEOUT"] = "1s"
	if res := (invocation{dir: app, env: env, args: []string{"wait"}}).run(t); res.status != 75 {
		t.Errorf("pending past the wait timeout: exit %d, want 75:\n%s", res.status, res.stderr)
	}
	closed := map[string]string{"DATABASE_URL": fmt.Sprintf("postgres://u:Sup3rSecretPw@127.0.0.1:%d/db", closedPort(t)), "MIGRUN_CONNECT_TIMEOUT": "1s"}
	res := invocation{dir: app, env: closed, args: []string{"wait"}}.run(t)
	if res.status != 69 {
		t.Errorf("unreachable: exit %d, want 69:\n%s", res.status, res.stderr)
	}
	assertNoSecret(t, "Sup3rSecretPw", res)
}

// TestWaitMultiDatabase: every database of a multi-database app must be
// current, each read from its own <NAME>_DATABASE_URL.
func TestWaitMultiDatabase(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := t.TempDir()
			for _, f := range []string{"db/migrate/20240101000000_create_users.rb", "db/animals_migrate/20240105000000_create_dogs.rb"} {
				path := filepath.Join(app, f)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			primary, primaryURL := srv.CreateDatabase(t)
			animals, animalsURL := srv.CreateDatabase(t)
			for _, db := range []string{primary, animals} {
				srv.Exec(t, db, "CREATE TABLE schema_migrations (version varchar(255) PRIMARY KEY)")
				if kind == "postgresql" { // made by the admin: let the app user read it
					srv.Exec(t, db, "GRANT SELECT ON schema_migrations TO migrun")
				}
			}
			srv.Exec(t, primary, "INSERT INTO schema_migrations VALUES ('20240101000000')")
			env := map[string]string{
				"DATABASE_URL":         primaryURL,
				"ANIMALS_DATABASE_URL": animalsURL,
				"MIGRUN_DATABASES":     "primary:db/migrate,animals:db/animals_migrate",
			}
			waiter := invocation{dir: app, env: env, args: []string{"wait"}}.start(t)
			waitFor(t, "wait to report the animals migration", timeoutLong, func() bool {
				return strings.Contains(waiter.stderr.String(), "animals: 20240105000000")
			})
			if strings.Contains(waiter.stderr.String(), "primary:") {
				t.Errorf("primary reported pending:\n%s", waiter.stderr.String())
			}
			srv.Exec(t, animals, "INSERT INTO schema_migrations VALUES ('20240105000000')")
			if res := waiter.wait(t); res.status != 0 {
				t.Fatalf("wait exited %d:\n%s", res.status, res.stderr)
			}
		})
	}
}

// TestSkipIfCurrent: with nothing pending the command is never started
// (it would fail); with a migration pending it runs.
func TestSkipIfCurrent(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			_, url := srv.CreateDatabase(t)
			if res := (invocation{dir: app, env: railsEnv(url)}).run(t); res.status != 0 {
				t.Fatalf("migrate exited %d:\n%s", res.status, res.stderr)
			}
			// Nothing pending: skipped before the lock, even while another
			// runner holds it, so Pods started together do not queue.
			holder, release := holdLock(t, railsEnv(url))
			skipped := invocation{dir: app, env: railsEnv(url), args: []string{"run", "--skip-if-current", "--", "false"}}.run(t)
			if skipped.status != 0 || !strings.Contains(skipped.termination, "skipped (nothing pending)") {
				t.Fatalf("nothing pending: exit %d:\n%s%s", skipped.status, skipped.termination, skipped.stderr)
			}
			if strings.Contains(skipped.stderr, "acquiring lock") || !strings.Contains(skipped.stderr, "before the lock") {
				t.Errorf("nothing pending, yet the run went for the lock:\n%s", skipped.stderr)
			}
			release()
			if res := holder.waitWithin(t, timeoutLong); res.status != 0 {
				t.Fatalf("holder exited %d:\n%s", res.status, res.stderr)
			}

			addMigration(t, app, "20240301000000", "add_name_to_users", "  def change\n    add_column :users, :name, :string\n  end")
			env := railsEnv(url)
			env["MIGRUN_SKIP_IF_CURRENT"] = "true"
			ran := invocation{dir: app, env: env}.run(t)
			if ran.status != 0 || !strings.Contains(ran.stdout, "AddNameToUsers: migrated") {
				t.Fatalf("pending: exit %d:\n%s%s", ran.status, ran.stdout, ran.stderr)
			}
		})
	}
}

// TestManifest: `migrun manifest` has Rails write down what it sees, and
// wait then uses it; a migration added after the manifest was written
// makes it stale, and the gate stays shut, saying so.
func TestManifest(t *testing.T) {
	srv := servers(t)["postgresql"]
	app := railsApp(t)
	_, url := srv.CreateDatabase(t)
	env := railsEnv(url)
	if res := (invocation{dir: app, env: env, args: []string{"manifest"}}).run(t); res.status != 0 {
		t.Fatalf("migrun manifest exited %d:\n%s%s", res.status, res.stdout, res.stderr)
	}
	data, err := os.ReadFile(filepath.Join(app, "db", "migrun-manifest.json"))
	if err != nil || !strings.Contains(string(data), "20240102000000") {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	if res := (invocation{dir: app, env: env}).run(t); res.status != 0 {
		t.Fatalf("migrate exited %d:\n%s", res.status, res.stderr)
	}
	env["MIGRUN_WAIT_TIMEOUT"] = "3s"
	if res := (invocation{dir: app, env: env, args: []string{"wait"}}).run(t); res.status != 0 {
		t.Fatalf("wait with a fresh manifest exited %d:\n%s", res.status, res.stderr)
	}
	addMigration(t, app, "20240301000000", "add_name_to_users", "  def change\n    add_column :users, :name, :string\n  end")
	res := invocation{dir: app, env: env, args: []string{"wait"}}.run(t)
	if res.status != 75 || !strings.Contains(res.stderr, "manifest") || !strings.Contains(res.stderr, "cannot tell") {
		t.Fatalf("wait with a stale manifest exited %d, want 75 saying why:\n%s", res.status, res.stderr)
	}
}
