package rails

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorded reads an output captured from the real Rails app (or psql,
// mariadb) by integration's TestDDLFailures.
func recorded(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "failures", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDecideRetryRecorded: the decisions on real outputs (Rails 6.1,
// PostgreSQL 15, MariaDB 10.11; see testdata/failures/README.md).
func TestDecideRetryRecorded(t *testing.T) {
	tests := []struct {
		name    string
		invalid []string // InvalidIndexes (checked)
		lock    bool
		retry   bool
		db      string
		version string // the failed migration's; "" none
		reason  string
	}{
		{name: "postgresql-transaction", lock: true, retry: true, db: PostgreSQL, version: "20240301000000",
			reason: "20240301000000 AddNicknameToAccounts ran in a transaction, which the lock timeout rolled back whole"},
		{name: "postgresql-outside-first", lock: true, retry: true, db: PostgreSQL, version: "20240301000000",
			reason: "20240301000000 AddNicknameToAccounts runs outside a transaction (disable_ddl_transaction!), but its first statement, add_column(:accounts, :nickname, :string), timed out before changing anything"},
		{name: "postgresql-outside-completed", lock: true, db: PostgreSQL, version: "20240301000000",
			reason: "not retried: 20240301000000 AddNicknameToAccounts runs outside a transaction (disable_ddl_transaction!) and completed 1 statement before the lock timeout (create_table(:things)); a rerun would trip over them: undo them by hand, or make them idempotent (e.g. if_not_exists: true), then run it again"},
		{name: "postgresql-concurrent-index", invalid: []string{"public.index_users_on_email"}, lock: true, db: PostgreSQL, version: "20240102000000",
			reason: "not retried: a cancelled CREATE INDEX CONCURRENTLY left the invalid index public.index_users_on_email behind; run DROP INDEX CONCURRENTLY public.index_users_on_email; then run the migration again"},
		{name: "postgresql-concurrent-index", lock: true, retry: true, db: PostgreSQL, version: "20240102000000",
			reason: "its first statement, add_index(:users, :email, {:algorithm=>:concurrently}), timed out before changing anything"},
		{name: "postgresql-add-reference-outside", lock: true, db: PostgreSQL, version: "20240301000000",
			reason: "the add_reference(:accounts, :user, {:index=>{:algorithm=>:concurrently}}) that timed out runs several statements"},
		{name: "postgresql-quiet", lock: true, retry: true, db: PostgreSQL, version: "20240301000000", reason: "ran in a transaction"},
		{name: "postgresql-quiet-outside", lock: true, db: PostgreSQL, version: "20240301000000", reason: "its progress lines are missing (VERBOSE=false"},
		{name: "postgresql-rescued", version: "20240301000000"},
		{name: "postgresql-statement-timeout", version: "20240301000000"},
		{name: "postgresql-psql", lock: true, db: PostgreSQL, reason: "the command's output is not Rails'"},
		{name: "mariadb-first", lock: true, retry: true, db: MySQL, version: "20240301000000",
			reason: "20240301000000 AddNicknameToAccounts cannot be rolled back (MySQL has no transactional DDL), but its first statement, add_column(:accounts, :nickname, :string), timed out before changing anything"},
		{name: "mariadb-completed", lock: true, db: MySQL, version: "20240301000000",
			reason: "not retried: 20240301000000 AddNicknameToAccounts cannot be rolled back (MySQL has no transactional DDL) and completed 1 statement before the lock timeout (create_table(:things))"},
		{name: "mariadb-checked-first", lock: true, retry: true, db: MySQL, version: "20240301000000", reason: "its first statement, add_column("},
		{name: "mariadb-row-lock", lock: true, retry: true, db: MySQL, version: "20240301000000", reason: `its first statement, execute("UPDATE accounts SET id = id")`},
		{name: "mariadb-duplicate-column", version: "20240301000000"},
		{name: "mariadb-client", lock: true, db: MySQL, reason: "not Rails'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			output := recorded(t, tt.name)
			if got := LockTimeoutFailure(output); got != tt.lock {
				t.Errorf("LockTimeoutFailure = %v, want %v", got, tt.lock)
			}
			d := DecideRetry(Failure{Output: output, InvalidIndexes: tt.invalid, InvalidIndexesChecked: true})
			if d.LockTimeout != tt.lock || d.Retry != tt.retry || d.Database != tt.db || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("DecideRetry = %+v\nwant lock %v, retry %v, database %q, reason containing %q", d, tt.lock, tt.retry, tt.db, tt.reason)
			}
			if !tt.lock && d.Reason != "" {
				t.Errorf("a failure that is no lock timeout has the reason %q", d.Reason)
			}
			if tt.lock && strings.Contains(d.Reason, "\n") {
				t.Errorf("the reason is not one line: %q", d.Reason)
			}
			if tt.lock && tt.version != "" && (d.Migration == nil || d.Migration.Version != tt.version) {
				t.Errorf("Migration = %+v, want %s", d.Migration, tt.version)
			}
		})
	}
}

// A migration's lines, then Rails' abort, as Rails 6.1 prints them.
const (
	header      = "== 20240301000000 AddNickname: migrating =======================================\n"
	abortOutTx  = "rails aborted!\nStandardError: An error has occurred, all later migrations canceled:\n\n"
	abortInTx   = "rails aborted!\nStandardError: An error has occurred, this and all later migrations canceled:\n\n"
	pgTimeout   = "PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n/app/db/migrate/20240301000000_add_nickname.rb:4:in `change'\n\nCaused by:\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\nTasks: TOP => db:migrate\n"
	myTimeout   = "Mysql2::Error::TimeoutError: Lock wait timeout exceeded; try restarting transaction\n/app/db/migrate/20240301000000_add_nickname.rb:4:in `change'\n\nCaused by:\nActiveRecord::LockWaitTimeout: Mysql2::Error::TimeoutError: Lock wait timeout exceeded; try restarting transaction\nTasks: TOP => db:migrate\n"
	addNickname = "-- add_column(:users, :nickname, :string)\n"
	done        = "   -> 0.0012s\n"
)

// TestDecideRetry: the rules on outputs made by hand, for what the
// recorded ones do not show.
func TestDecideRetry(t *testing.T) {
	tests := []struct {
		name      string
		output    string
		invalid   []string
		unchecked bool   // InvalidIndexes not looked up
		file      string // the migration's source in db/migrate, "" none
		retry     bool
		reason    string
	}{
		{name: "reads before the failing statement are no work done", retry: true,
			output: header + "-- column_exists?(:users, :nickname)\n" + done + "-- select_value(\"SELECT 1\")\n" + done + "   -> 1 rows\n" + addNickname + abortOutTx + myTimeout},
		{name: "a completed execute is", reason: "completed 1 statement before the lock timeout (execute(\"UPDATE users SET a = 1\"))",
			output: header + "-- execute(\"UPDATE users SET a = 1\")\n" + done + "   -> 3 rows\n" + addNickname + abortOutTx + myTimeout},
		{name: "the app's own say_with_time that completed", reason: "completed 1 statement before the lock timeout (Backfilling nicknames)",
			output: header + "-- Backfilling nicknames\n" + done + addNickname + abortOutTx + myTimeout},
		{name: "a failing statement Rails did not print", reason: "the statement that timed out is not one Rails printed",
			output: header + "-- Backfilling nicknames\n" + abortOutTx + myTimeout},
		{name: "nothing printed after the header", reason: "the statement that timed out is not one Rails printed",
			output: header + abortOutTx + myTimeout},
		{name: "a gap in the capture after the header", reason: "its progress lines are missing",
			output: header + "[... migrun: 1048576 bytes omitted ...]\n" + addNickname + abortOutTx + myTimeout},
		{name: "stderr read before stdout (no Ruby sync) still reads", retry: true,
			output: abortOutTx + myTimeout + header + addNickname},
		{name: "add_column with a comment is two statements on PostgreSQL", reason: "runs several statements",
			output: header + "-- add_column(:users, :nickname, :string, {:comment=>\"shown\"})\n" + abortOutTx + pgTimeout},
		{name: "Rails 7.1's keyword form too", reason: "runs several statements",
			output: header + "-- add_column(:users, :nickname, :string, comment: \"shown\")\n" + abortOutTx + pgTimeout},
		{name: "a column named comment is not an option", retry: true,
			output: header + "-- add_column(:users, :comment, :text)\n" + abortOutTx + pgTimeout},
		{name: "add_column with a comment is one statement on MySQL", retry: true,
			output: header + "-- add_column(:users, :nickname, :string, {:comment=>\"shown\"})\n" + abortOutTx + myTimeout},
		{name: "change_column_null with a default updates first", reason: "runs several statements",
			output: header + "-- change_column_null(:users, :nickname, false, \"none, really\")\n" + abortOutTx + myTimeout},
		{name: "change_column_null without one does not", retry: true,
			output: header + "-- change_column_null(:users, :nickname, false)\n" + abortOutTx + myTimeout},
		{name: "add_timestamps adds two columns", reason: "runs several statements",
			output: header + "-- add_timestamps(:users, {:null=>true})\n" + abortOutTx + myTimeout},
		{name: "a cancelled DROP INDEX CONCURRENTLY's index is dropped by the rerun", invalid: []string{"public.index_users_on_email"}, retry: true,
			output: header + "-- remove_index(:users, {:column=>:email, :algorithm=>:concurrently})\n" + abortOutTx + pgTimeout},
		{name: "invalid indexes, several", invalid: []string{"public.a", "public.b"}, reason: "left the invalid indexes public.a, public.b behind; run DROP INDEX CONCURRENTLY public.a; DROP INDEX CONCURRENTLY public.b; then",
			output: header + "-- add_index(:users, :email, {:algorithm=>:concurrently})\n" + abortOutTx + pgTimeout},
		{name: "an invalid index not checked for", unchecked: true, reason: "may have left an invalid index, and migrun could not check",
			output: header + "-- execute(\"CREATE INDEX CONCURRENTLY a ON users (email)\")\n" + abortOutTx + pgTimeout},
		{name: "an invalid index is named even without Rails", invalid: []string{`"Tenant".ix`}, reason: `left the invalid index "Tenant".ix behind; run DROP INDEX CONCURRENTLY "Tenant".ix; then`,
			output: "psql:up.sql:3: ERROR:  canceling statement due to lock timeout\n"},
		{name: "a lock timeout outside any migration", retry: true, reason: "outside any migration",
			output: "rails aborted!\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n/app/bin/rails:4:in `<main>'\nTasks: TOP => db:migrate\n"},
		{name: "Ruby 3.4's detailed message", retry: true, reason: "ran in a transaction",
			output: header + addNickname + "rails aborted!\nStandardError: An error has occurred, this and all later migrations canceled: (StandardError)\n\nPG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n\nCaused by:\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout (ActiveRecord::LockWaitTimeout)\n"},
		{name: "trilogy", retry: true,
			output: header + addNickname + abortOutTx + "Trilogy::ProtocolError: 1205: Lock wait timeout exceeded; try restarting transaction\n"},
		{name: "no wrapper, the file says transactional", retry: true, reason: "ran in a transaction",
			output: header + "-- create_table(:things)\n" + done + addNickname + "rails aborted!\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n",
			file:   "class AddNickname < ActiveRecord::Migration[6.1]\n  # disable_ddl_transaction! would be wrong here\n  def change\n  end\nend\n"},
		{name: "no wrapper, the file disables the transaction", reason: "runs outside a transaction (disable_ddl_transaction!) and completed 1 statement",
			output: header + "-- create_table(:things)\n" + done + addNickname + "rails aborted!\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n",
			file:   "class AddNickname < ActiveRecord::Migration[6.1]\n  disable_ddl_transaction!\n  def change\n  end\nend\n"},
		{name: "no wrapper, a base class of the app's", reason: "may run outside a transaction (db/migrate/20240301000000_add_nickname.rb does not inherit ActiveRecord::Migration directly) and completed 1 statement",
			output: header + "-- create_table(:things)\n" + done + addNickname + "rails aborted!\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n",
			file:   "class AddNickname < ConcurrentMigration\n  def change\n  end\nend\n"},
		{name: "no wrapper and no file", reason: "its file is not in the migrations paths migrun knows",
			output: header + "-- create_table(:things)\n" + done + addNickname + "rails aborted!\nActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.file != "" {
				dir := filepath.Join(root, "db", "migrate")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "20240301000000_add_nickname.rb"), []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d := DecideRetry(Failure{Output: tt.output, Root: root, MigrationsPaths: []string{"db/migrate"},
				InvalidIndexes: tt.invalid, InvalidIndexesChecked: !tt.unchecked})
			if !d.LockTimeout || d.Retry != tt.retry || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("DecideRetry = %+v\nwant retry %v, reason containing %q", d, tt.retry, tt.reason)
			}
			if !d.Retry && !strings.HasPrefix(d.Reason, "not retried: ") {
				t.Errorf("reason %q does not say it is not retried", d.Reason)
			}
		})
	}
}

// TestLockTimeoutFailure: the forms recognised, and what is not a lock
// timeout although it looks like one.
func TestLockTimeoutFailure(t *testing.T) {
	tests := []struct {
		output string
		want   bool
	}{
		{"ERROR:  canceling statement due to lock timeout\n", true},
		{"psql:/app/up.sql:3: ERROR:  canceling statement due to lock timeout\nCONTEXT:  SQL statement \"ALTER TABLE users\"\n", true},
		{"ERROR: could not obtain lock on relation \"users\" (SQLSTATE 55P03)\n", true},
		{"migrate: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)\n", true},
		{"ERROR 1205 (HY000) at line 1: Lock wait timeout exceeded; try restarting transaction\n", true},
		{"ERROR 1205 (HY000) at line 1: Tiempo de espera de bloqueo excedido\n", true}, // lc_messages
		{"Error 1205 (HY000): Lock wait timeout exceeded; try restarting transaction\n", true},
		{"ERROR:  canceling statement due to statement timeout\n", false},
		{"ERROR:  deadlock detected\n", false},
		{"ERROR 1213 (40001): Deadlock found when trying to get lock; try restarting transaction\n", false},
		{"ERROR 1969 (70100): Query execution was interrupted (max_statement_time exceeded)\n", false},
		// An earlier lock timeout the command got past; the last error is another.
		{"WARN: retrying after ERROR:  canceling statement due to lock timeout\nERROR:  relation \"users\" does not exist\n", false},
		{"", false},
		{"rails aborted!\n", false},
		{"rails aborted!\nActiveRecord::ConcurrentMigrationError: \n\nCannot run migrations because another migration process is currently running.\n", false},
	}
	for _, tt := range tests {
		if got := LockTimeoutFailure(tt.output); got != tt.want {
			t.Errorf("LockTimeoutFailure(%q) = %v, want %v", tt.output, got, tt.want)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	tests := map[string]int{
		``:                                     0,
		`:users`:                               1,
		`:users, :nickname, false`:             3,
		`:users, :n, false, "a, b"`:            4,
		`:users, :n, false, {:a=>[1, 2]}`:      4,
		`:users, :n, false, 'it\'s, so'`:       4,
		`:users, {:column=>[:a, :b], :x=>"("}`: 2,
	}
	for args, want := range tests {
		if got := splitArgs(args); len(got) != want {
			t.Errorf("splitArgs(%q) = %q, want %d", args, got, want)
		}
	}
}
