package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/sessions"
)

// recordFailures, set, makes TestDDLFailures write the outputs it
// captures to rails/testdata/failures (the unit tests of rails.DecideRetry
// read them there).
const recordFailures = "MIGRUN_RECORD_FAILURES"

// failureCase is one way a migration attempt fails, on one server.
type failureCase struct {
	name      string
	kind      string
	migration string // the body of migration 20240301000000 <migName>; "" none
	migName   string // default add_nickname_to_accounts
	block     string // "table" (accounts read), "rows" (accounts' rows locked), "snapshot" (an old snapshot), ""
	keepIndex bool   // keep the app's AddIndexToUsersEmail (CREATE INDEX CONCURRENTLY on PostgreSQL)
	env       map[string]string
	urlQuery  string   // added to DATABASE_URL
	command   []string // another command than rails db:migrate (the URL and the server's address are filled in)
	lock      bool     // a lock timeout
	retry     bool     // and may be retried
	reason    string   // in the decision's reason
}

const addNickname = "  def change\n    add_column :accounts, :nickname, :string\n  end"

var failureCases = []failureCase{
	{name: "postgresql-transaction", kind: testdb.KindPostgreSQL, migration: addNickname, block: "table", lock: true, retry: true, reason: "ran in a transaction"},
	{name: "postgresql-outside-first", kind: testdb.KindPostgreSQL, migration: "  disable_ddl_transaction!\n" + addNickname, block: "table", lock: true, retry: true, reason: "its first statement, add_column(:accounts, :nickname, :string), timed out"},
	{name: "postgresql-outside-completed", kind: testdb.KindPostgreSQL, block: "table", lock: true, reason: "completed 1 statement before the lock timeout (create_table(:things))",
		migration: "  disable_ddl_transaction!\n  def change\n    create_table :things\n    add_column :accounts, :nickname, :string\n  end"},
	{name: "postgresql-concurrent-index", kind: testdb.KindPostgreSQL, keepIndex: true, block: "snapshot", lock: true,
		reason: "left the invalid index public.index_users_on_email behind; run DROP INDEX CONCURRENTLY public.index_users_on_email; then"},
	{name: "postgresql-add-reference-outside", kind: testdb.KindPostgreSQL, block: "table", lock: true, reason: "runs several statements",
		migration: "  disable_ddl_transaction!\n  def change\n    add_reference :accounts, :user, index: { algorithm: :concurrently }\n  end"},
	{name: "postgresql-quiet", kind: testdb.KindPostgreSQL, migration: addNickname, block: "table", env: map[string]string{"VERBOSE": "false"}, lock: true, retry: true, reason: "ran in a transaction"},
	{name: "postgresql-quiet-outside", kind: testdb.KindPostgreSQL, migration: "  disable_ddl_transaction!\n" + addNickname, block: "table", env: map[string]string{"VERBOSE": "false"}, lock: true, reason: "progress lines are missing"},
	{name: "postgresql-rescued", kind: testdb.KindPostgreSQL, block: "table",
		migration: "  def up\n    add_column :accounts, :nickname, :string\n  rescue ActiveRecord::LockWaitTimeout\n    raise \"gave up waiting for accounts\"\n  end"},
	{name: "postgresql-statement-timeout", kind: testdb.KindPostgreSQL,
		migration: "  def up\n    execute \"SET LOCAL statement_timeout = '200ms'\"\n    execute \"SELECT pg_sleep(5)\"\n  end"},
	{name: "postgresql-psql", kind: testdb.KindPostgreSQL, block: "table", lock: true, reason: "not Rails'",
		command: []string{"psql", "{url}", "-X", "-v", "ON_ERROR_STOP=1", "-c", "SET lock_timeout = '1s'", "-c", "ALTER TABLE accounts ADD COLUMN nickname text"}},

	{name: "mariadb-first", kind: testdb.KindMariaDB, migration: addNickname, block: "table", lock: true, retry: true, reason: "cannot be rolled back (MySQL has no transactional DDL), but its first statement"},
	{name: "mariadb-completed", kind: testdb.KindMariaDB, block: "table", lock: true, reason: "completed 1 statement before the lock timeout (create_table(:things))",
		migration: "  def change\n    create_table :things\n    add_column :accounts, :nickname, :string\n  end"},
	{name: "mariadb-checked-first", kind: testdb.KindMariaDB, block: "table", lock: true, retry: true, reason: "its first statement, add_column(:accounts, :nickname, :string)",
		migration: "  def up\n    add_column :accounts, :nickname, :string unless column_exists?(:accounts, :nickname)\n  end"},
	{name: "mariadb-row-lock", kind: testdb.KindMariaDB, block: "rows", lock: true, retry: true, reason: "its first statement, execute(",
		migration: "  def up\n    execute \"UPDATE accounts SET id = id\"\n  end",
		urlQuery:  "?init_command=SET%20%40%40SESSION.innodb_lock_wait_timeout%3D1"},
	{name: "mariadb-duplicate-column", kind: testdb.KindMariaDB, migration: "  def change\n    add_column :accounts, :id, :integer\n  end"},
	{name: "mariadb-client", kind: testdb.KindMariaDB, block: "table", lock: true, reason: "not Rails'",
		command: []string{"mariadb", "-h", "{host}", "-P", "{port}", "-u", testdb.AppUser, "-p{password}", "{database}", "-e", "SET SESSION lock_wait_timeout = 1; ALTER TABLE accounts ADD COLUMN nickname text"}},
}

// TestDDLFailures: real Rails (and psql, mariadb) failing on a lock
// timeout, and failing otherwise, with the DDL lock timeout at 1s; what
// rails.LockTimeoutFailure and rails.DecideRetry make of each output, with
// the invalid indexes the observer finds. With MIGRUN_RECORD_FAILURES=1
// the outputs are written to rails/testdata/failures for the unit tests.
func TestDDLFailures(t *testing.T) {
	srvs := servers(t)
	for _, c := range failureCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := srvs[c.kind]
			app := railsApp(t)
			if !c.keepIndex {
				withoutMigration(t, app, "20240102000000_add_index_to_users_email.rb")
			}
			db, url := srv.CreateDatabase(t)
			if c.kind == testdb.KindPostgreSQL {
				pgExec(t, pgConn(t, url), "CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts VALUES (1)")
			} else {
				conn := myConn(t, url)
				myExec(t, conn, "CREATE TABLE accounts (id int PRIMARY KEY)")
				myExec(t, conn, "INSERT INTO accounts VALUES (1)")
			}
			if c.migration != "" {
				name := c.migName
				if name == "" {
					name = "add_nickname_to_accounts"
				}
				addMigration(t, app, "20240301000000", name, c.migration)
			}
			u, err := dburl.Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			obs := sessions.Observe(u, "", sessions.ObserverOptions{})
			t.Cleanup(func() { obs.Close() })
			before, err := obs.InvalidIndexes(context.Background())
			if err != nil {
				t.Fatal(err)
			}

			switch c.block {
			case "table":
				defer blockTable(t, srv, url, "accounts").release()
			case "rows":
				defer holdTransaction(t, srv, url, "SELECT * FROM accounts FOR UPDATE").release()
			case "snapshot":
				defer holdSnapshot(t, url).release()
			}
			var pg sessions.Postgres
			if c.kind == testdb.KindPostgreSQL {
				pg = probe(t, url)
			}
			extra := map[string]string{"DATABASE_URL": url + c.urlQuery}
			for k, v := range c.env {
				extra[k] = v
			}
			env, _ := sessionsEnv(t, url, extra, sessions.Settings{LockTimeout: time.Second}, pg)
			run := startRailsLikeMigrun(t, app, env, fill(c.command, srv, db, url)...)
			status := run.wait(t, 2*time.Minute)
			output := run.stdout.String()
			if status == 0 {
				t.Fatalf("the command succeeded:\n%s", output)
			}

			after, err := obs.InvalidIndexes(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			failure := rails.Failure{Output: output, Root: app, MigrationsPaths: []string{"db/migrate"},
				InvalidIndexes: added(before, after), InvalidIndexesChecked: true}
			d := rails.DecideRetry(failure)
			t.Logf("exit %d; decision %+v\n%s", status, d, output)
			if got := rails.LockTimeoutFailure(output); got != c.lock || d.LockTimeout != c.lock {
				t.Errorf("LockTimeoutFailure = %v, decision's %v; want %v", got, d.LockTimeout, c.lock)
			}
			if d.Retry != c.retry || !strings.Contains(d.Reason, c.reason) {
				t.Errorf("decision: retry %v, %q; want %v, containing %q", d.Retry, d.Reason, c.retry, c.reason)
			}
			if os.Getenv(recordFailures) != "" {
				record(t, c.name, output, app, srv.Password())
			}
		})
	}
}

// fill puts the server's particulars into a command's arguments.
func fill(args []string, srv *testdb.Server, db, url string) []string {
	r := strings.NewReplacer("{url}", url, "{host}", srv.Host(), "{port}", strconv.Itoa(srv.Port()), "{password}", srv.Password(), "{database}", db)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}

// added are the names in after that are not in before.
func added(before, after []string) []string {
	var out []string
	for _, n := range after {
		if !slices.Contains(before, n) {
			out = append(out, n)
		}
	}
	return out
}

// record writes a captured output to rails/testdata/failures, the app's
// temporary directory written /app.
func record(t *testing.T, name, output, app, password string) {
	t.Helper()
	if strings.Contains(output, password) {
		t.Fatalf("the output holds the password; not recorded")
	}
	output = strings.ReplaceAll(output, app, "/app")
	path := filepath.Join("..", "rails", "testdata", "failures", name+".txt")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(output), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s", path)
}
