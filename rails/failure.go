package rails

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file reads a failed attempt of the migration command: did a
// statement give up waiting for a lock (a lock timeout: MIGRUN_DDL_LOCK_TIMEOUT
// doing its job), and may the command be run again without tripping over
// what the failed attempt left behind?

// The databases a lock timeout names (Failure, Decision.Database).
const (
	PostgreSQL = "postgresql"
	MySQL      = "mysql" // MySQL and MariaDB, through mysql2 or trilogy
)

// What the servers and their Ruby clients say when a statement gives up
// waiting for a lock, as Rails 6.1 prints it (checked with the real app,
// see rails/testdata/failures):
//
//	PostgreSQL (SQLSTATE 55P03, lock_not_available; also NOWAIT's "could not obtain lock"):
//	  ActiveRecord::LockWaitTimeout: PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout
//	MySQL/MariaDB (error 1205, ER_LOCK_WAIT_TIMEOUT: lock_wait_timeout for a
//	metadata lock, innodb_lock_wait_timeout for a row lock; one message):
//	  ActiveRecord::LockWaitTimeout: Mysql2::Error::TimeoutError: Lock wait timeout exceeded; try restarting transaction
//
// and other clients: psql's "ERROR:  canceling statement due to lock
// timeout", the mysql client's "ERROR 1205 (HY000) at line 1: Lock wait
// timeout exceeded; ...", Go drivers' "(SQLSTATE 55P03)" and "Error 1205".
var (
	pgLockTimeout = lazy(`PG::LockNotAvailable|canceling statement due to lock timeout|\b55P03\b|lock_not_available|could not obtain lock on `)
	myLockTimeout = lazy(`Lock wait timeout exceeded|(?i:error:? 1205\b)|: 1205: `)
	arLockTimeout = lazy(`ActiveRecord::LockWaitTimeout\b`)
	pgClient      = lazy(`\bPG::|\bPQ|postgres|psql|SQLSTATE`)
	myClient      = lazy(`Mysql2::|Trilogy::|(?i:mysql|mariadb)`)

	// wrapperLine is Rails' Migrator#execute_migration_in_transaction
	// wrapping whatever a migration raised (6.1 to 8.1):
	//
	//	msg = +"An error has occurred, "
	//	msg << "this and " if use_transaction?(migration)
	//	msg << "all later migrations canceled:\n\n#{e}"
	//
	// so it says whether the failed migration ran in a transaction.
	wrapperLine = lazy(`An error has occurred, (this and )?all later migrations canceled:`)
	// errorLine is a line that reports an error, in a command that is not Rails.
	errorLine = lazy(`(?i)\berror\b|exception|\bfatal\b|\baborted\b`)
)

// LockTimeoutFailure reports whether output is that of a command that
// failed because a statement gave up waiting for a lock. For Rails, that
// is the error its "rails aborted!" names (the migration's own error, not
// one it rescued along the way); for other commands, the last line that
// reports an error.
func LockTimeoutFailure(output string) bool {
	return readFailure(output).database != ""
}

// transaction is what is known of whether the failed migration ran in a
// transaction.
type transaction int

const (
	txUnknown transaction = iota
	txYes
	txNo
)

// failure is the error that ended a command.
type failure struct {
	rails bool // Rake's "rails aborted!" is there
	// database is PostgreSQL or MySQL when the error is a lock timeout,
	// "" when it is not; "?" for ActiveRecord::LockWaitTimeout without a
	// client's name.
	database string
	// inMigration: Rails' wrapper says a migration raised it, and tx
	// whether that migration ran in a transaction.
	inMigration bool
	tx          transaction
}

func readFailure(output string) failure {
	lines := strings.Split(strings.ReplaceAll(output, "\r\n", "\n"), "\n")
	aborted := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.TrimSpace(lines[i]) == "rails aborted!" {
			aborted = i
			break
		}
	}
	var f failure
	if aborted < 0 {
		for i := len(lines) - 1; i >= 0; i-- {
			if errorLine.re().MatchString(lines[i]) {
				f.database = lockTimeoutIn(lines[i])
				break
			}
		}
		return f
	}
	f.rails = true
	// Rake prints the error's class and message, then (Rails' backtrace
	// cleaner keeping the app's frames) its backtrace, then each cause as
	// "Caused by:" and the cause's class and message.
	rest := nonEmpty(lines[aborted+1:])
	if len(rest) == 0 {
		return f
	}
	described := []string{rest[0]}
	if m := wrapperLine.re().FindStringSubmatch(rest[0]); m != nil {
		f.inMigration = true
		f.tx = txNo
		if m[1] != "" {
			f.tx = txYes
		}
		// The migration's own error: its message after the wrapper's
		// blank line, and its class with the message again as the first
		// cause (the wrapper is raised in its rescue).
		described = nil
		if len(rest) > 1 {
			described = append(described, rest[1])
		}
		for i, line := range rest {
			if strings.TrimSpace(line) == "Caused by:" && i+1 < len(rest) {
				described = append(described, rest[i+1])
				break
			}
		}
	}
	for _, line := range described {
		if db := lockTimeoutIn(line); db != "" {
			f.database = db
			break
		}
	}
	return f
}

// lockTimeoutIn names the database whose lock timeout line reports, or "".
func lockTimeoutIn(line string) string {
	switch {
	case pgLockTimeout.re().MatchString(line):
		return PostgreSQL
	case myLockTimeout.re().MatchString(line):
		return MySQL
	case arLockTimeout.re().MatchString(line):
		switch {
		case myClient.re().MatchString(line):
			return MySQL
		case pgClient.re().MatchString(line):
			return PostgreSQL
		}
		return "?"
	}
	return ""
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, "\r"))
		}
	}
	return out
}

// Failure is a failed attempt of the migration command, as DecideRetry
// reads it.
type Failure struct {
	// Output is the attempt's captured output, stdout and stderr as the
	// runner interleaved them (runner.Result.Output).
	Output string
	// Root is the app's directory, where relative migrations paths start;
	// "" is the working directory.
	Root string
	// MigrationsPaths are every database's migrations paths (as Analysis
	// has them: Databases[].Paths), where the failed migration's file is
	// looked for when Rails' own words do not say whether it ran in a
	// transaction.
	MigrationsPaths []string
	// InvalidIndexes are the PostgreSQL indexes found invalid after the
	// failure that were not invalid before the first attempt
	// (sessions.Observer.InvalidIndexes, both times), qualified names.
	InvalidIndexes []string
	// InvalidIndexesChecked says InvalidIndexes was looked up. Unchecked,
	// a failed CREATE INDEX CONCURRENTLY outside a transaction is not
	// retried: it may have left an invalid index.
	InvalidIndexesChecked bool
}

// Decision says whether a failed attempt may be run again.
type Decision struct {
	// LockTimeout: the attempt failed because a statement gave up
	// waiting for a lock. Nothing else is ever retried.
	LockTimeout bool
	// Retry: running the command again cannot trip over what this
	// attempt left behind.
	Retry bool
	// Reason is one line: why it may be retried, or why not and the fix.
	// Empty when the failure is not a lock timeout.
	Reason string
	// Database is PostgreSQL or MySQL when the lock timeout names it.
	Database string
	// Migration is the migration that failed, when the output names it.
	Migration *Migration
}

// DecideRetry decides whether the failed attempt f may be run again.
// Only a lock timeout is, and only when the failed migration left nothing
// a rerun would trip over:
//
//   - a migration that ran in a transaction (PostgreSQL's default) was
//     rolled back whole: retry;
//   - a lock timeout in Rails' own statements, outside any migration: retry;
//   - a migration outside a transaction (PostgreSQL with
//     disable_ddl_transaction!; every migration on MySQL, which cannot
//     roll DDL back) is retried only when the statement that timed out
//     was its first that could change anything, and is one Rails runs as
//     one SQL statement: then nothing it did survived. A migration that
//     completed a statement, whose statement that timed out runs several
//     (add_reference, change_table, create_table, ...), or whose progress
//     lines are missing (VERBOSE=false, a gap in the capture) is not;
//   - on PostgreSQL, an invalid index left behind (a cancelled CREATE
//     INDEX CONCURRENTLY; lock_timeout also bounds its wait for older
//     transactions) is never retried over: a rerun fails on it, or with
//     if_not_exists: true silently keeps it. The reason names it.
//
// Rails prints a line for each statement a migration runs through its
// own methods (add_column, execute, ...); what a migration does through a
// model or `connection.` directly is invisible here.
func DecideRetry(f Failure) Decision {
	fail := readFailure(f.Output)
	d := Decision{LockTimeout: fail.database != ""}
	if !d.LockTimeout {
		return d
	}
	if fail.database != "?" {
		d.Database = fail.database
	}
	_, d.Migration = ParseRun(f.Output)
	no := func(format string, args ...any) Decision {
		d.Reason = "not retried: " + fmt.Sprintf(format, args...)
		return d
	}
	yes := func(format string, args ...any) Decision {
		d.Retry, d.Reason = true, fmt.Sprintf(format, args...)
		return d
	}

	if len(f.InvalidIndexes) > 0 {
		// Even if this migration did not make them: they were not there
		// before the first attempt, and a rerun is at best confusing.
		log := readMigrationLog(f.Output, d.Migration)
		if log.failing == nil || log.failing.name != "remove_index" {
			what := "the invalid index " + f.InvalidIndexes[0]
			if len(f.InvalidIndexes) > 1 {
				what = "the invalid indexes " + strings.Join(f.InvalidIndexes, ", ")
			}
			return no("a cancelled CREATE INDEX CONCURRENTLY left %s behind; run %s then run the migration again", what, dropIndexes(f.InvalidIndexes))
		}
		// A cancelled DROP INDEX CONCURRENTLY leaves its index invalid;
		// the rerun's remove_index drops it.
	}
	if !fail.rails {
		return no("the command's output is not Rails' (no \"rails aborted!\"), so migrun cannot tell what it completed before the lock timeout; check, then run it again once the blocker is gone")
	}
	if !fail.inMigration && d.Migration == nil {
		return yes("the lock timeout came in Rails' own statements, outside any migration, which leave nothing half-done")
	}
	m := d.Migration
	if m == nil {
		return no("migrun cannot tell which migration failed (its lines are missing from the output); check what it completed, then run it again")
	}
	name := m.Version + " " + m.Name
	tx := fail.tx
	where := ""
	if tx == txUnknown {
		tx, where = fileTransaction(f.Root, f.MigrationsPaths, m.Version, d.Database)
	}
	if tx == txYes {
		return yes("%s ran in a transaction, which the lock timeout rolled back whole", name)
	}
	var outside string
	switch {
	case tx == txUnknown:
		outside = "may run outside a transaction (" + where + ")"
	case d.Database == MySQL:
		outside = "cannot be rolled back (MySQL has no transactional DDL)"
	case d.Database == PostgreSQL:
		outside = "runs outside a transaction (disable_ddl_transaction!)"
	default:
		outside = "runs outside a transaction"
	}

	log := readMigrationLog(f.Output, m)
	switch {
	case !log.seen:
		return no("%s %s and its progress lines are missing (VERBOSE=false, or left out of the captured output), so migrun cannot tell what it completed; check, undo what it did, then run it again", name, outside)
	case len(log.completed) > 0:
		return no("%s %s and completed %s before the lock timeout (%s); a rerun would trip over them: undo them by hand, or make them idempotent (e.g. if_not_exists: true), then run it again",
			name, outside, plural(len(log.completed), "statement"), short(strings.Join(log.completed, ", ")))
	case log.failing == nil:
		return no("%s %s and the statement that timed out is not one Rails printed (a model or connection call), so migrun cannot tell what it completed; check, then run it again", name, outside)
	case !log.failing.single(d.Database):
		return no("%s %s and the %s that timed out runs several statements, some of which may have completed; check what it left, then run it again", name, outside, short(log.failing.text))
	case d.Database != MySQL && !f.InvalidIndexesChecked && log.failing.concurrently():
		return no("%s's %s may have left an invalid index, and migrun could not check: look for one (SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid), drop it with DROP INDEX CONCURRENTLY, then run the migration again", name, short(log.failing.text))
	}
	return yes("%s %s, but its first statement, %s, timed out before changing anything", name, outside, short(log.failing.text))
}

func dropIndexes(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString("DROP INDEX CONCURRENTLY " + n + "; ")
	}
	return strings.TrimSpace(b.String())
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// short keeps a reason to one readable line.
func short(s string) string {
	const max = 120
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

// Migration#say_with_time, around every call a migration makes through
// its method_missing (add_column, execute, ...) and the app's own blocks,
// writes (activerecord/lib/active_record/migration.rb, 6.1 to 8.1):
//
//	-- add_column(:users, :nickname, :string)
//	   -> 0.0012s
//	   -> 3 rows          (when the block returned an Integer)
//
// The first line before the call, the time after it: a call without its
// time line is the one that was running.
var (
	sayLine  = lazy(`^-- (.*)$`)
	callLine = lazy(`^-- ([a-z_][a-zA-Z0-9_]*[?!]?)\((.*)\)\s*$`)
	timeLine = lazy(`^   -> \d+(?:\.\d+)?s\s*$`)
)

// call is one line "-- name(args)".
type call struct {
	text, name, args string
}

// migrationLog is what the failed migration's own lines say.
type migrationLog struct {
	// seen: its "migrating" line is there and nothing was left out
	// after it, so the lines below are all it printed.
	seen bool
	// completed are the calls that finished and may have changed
	// something (reads such as column_exists? are left out).
	completed []string
	// failing is the call that was running, innermost; nil when the last
	// open line is not a call (a `say`, the app's own say_with_time) or
	// there is none.
	failing *call
}

func readMigrationLog(output string, m *Migration) migrationLog {
	var log migrationLog
	if m == nil {
		return log
	}
	var open []string // say lines awaiting their time line
	inside := false
	for line := range strings.Lines(output) {
		line = strings.TrimRight(line, "\r\n")
		if s := startLine.re().FindStringSubmatch(line); s != nil {
			inside = s[1] == m.Version
			if inside {
				log = migrationLog{seen: true}
				open = nil
			}
			continue
		}
		if !inside {
			continue
		}
		switch {
		case doneLine.re().MatchString(line):
			inside = false
		case gapLine.re().MatchString(line):
			// What it printed in the gap is unknown.
			return migrationLog{}
		case timeLine.re().MatchString(line):
			if len(open) == 0 {
				continue
			}
			done := open[len(open)-1]
			open = open[:len(open)-1]
			if c := parseCall(done); c == nil || !c.readOnly() {
				log.completed = append(log.completed, done)
			}
		default:
			if s := sayLine.re().FindStringSubmatch(line); s != nil {
				open = append(open, s[1])
			}
		}
	}
	if len(open) > 0 {
		log.failing = parseCall(open[len(open)-1])
	}
	return log
}

func parseCall(text string) *call {
	m := callLine.re().FindStringSubmatch("-- " + text)
	if m == nil {
		return nil
	}
	return &call{text: text, name: m[1], args: m[2]}
}

// readOnly: the call reads and changes nothing (a predicate such as
// column_exists?, select_value, the schema's introspection).
func (c *call) readOnly() bool {
	if strings.HasSuffix(c.name, "?") {
		return true
	}
	switch c.name {
	case "select_all", "select_one", "select_value", "select_values", "select_rows",
		"columns", "indexes", "foreign_keys", "check_constraints", "tables", "views",
		"data_sources", "primary_key", "table_comment", "quote", "quote_table_name", "quote_column_name":
		return true
	}
	return false
}

// singleStatement are the calls Rails 6.1 to 8.1 run as one SQL
// statement on PostgreSQL and MySQL, so that one that failed did nothing.
// Others run several (add_reference: the column, its index, its foreign
// key; add_timestamps: two columns; rename_column and rename_table also
// rename indexes; create_table on PostgreSQL creates its indexes and
// comments apart; change_table runs one per line) and are never taken
// for this list's sake. Options that add a statement are checked in single.
var singleStatement = map[string]bool{
	"add_column": true, "remove_column": true, "change_column": true, "change_column_default": true,
	"change_column_null": true, "change_column_comment": true, "change_table_comment": true,
	"add_index": true, "remove_index": true,
	"add_foreign_key": true, "remove_foreign_key": true, "validate_foreign_key": true,
	"add_check_constraint": true, "remove_check_constraint": true, "validate_check_constraint": true,
	"drop_table": true, "execute": true, "enable_extension": true, "disable_extension": true,
}

// commentOption is a comment: option as Ruby 3.1 (`:comment=>`) and 3.4
// or Rails 7.1+ (`comment:`) print it.
var commentOption = lazy(`:comment\s*=>|\bcomment:`)

// single reports whether the call runs one SQL statement on database.
func (c *call) single(database string) bool {
	if !singleStatement[c.name] {
		return false
	}
	switch c.name {
	case "add_column", "change_column", "add_index":
		// PostgreSQL sets a comment with a statement of its own.
		return database == MySQL || !commentOption.re().MatchString(c.args)
	case "change_column_null":
		// With a default (the fourth argument) it first UPDATEs the NULLs.
		return len(splitArgs(c.args)) <= 3
	}
	return true
}

// concurrently: the call builds or drops an index CONCURRENTLY (add_index's
// algorithm: :concurrently, or an execute of the SQL).
func (c *call) concurrently() bool {
	return strings.Contains(strings.ToLower(c.args), "concurrently")
}

// splitArgs splits Ruby's inspect of an argument list at its top-level
// commas (not inside brackets, braces, parentheses or strings).
func splitArgs(args string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(args); i++ {
		ch := args[i]
		switch {
		case quote != 0:
			if ch == '\\' {
				i++
			} else if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '(' || ch == '[' || ch == '{':
			depth++
		case ch == ')' || ch == ']' || ch == '}':
			depth--
		case ch == ',' && depth == 0:
			out = append(out, strings.TrimSpace(args[start:i]))
			start = i + 1
		}
	}
	if rest := strings.TrimSpace(args[start:]); rest != "" || len(out) > 0 {
		out = append(out, rest)
	}
	return out
}

// disableDDLTransaction is the class method that takes a migration out of
// its transaction; migrationClass a class line Rails' transaction rules
// hold for (a subclass of something else may inherit
// disable_ddl_transaction! from it).
var (
	disableDDLTransaction = lazy(`(?m)^[^#\n]*\bdisable_ddl_transaction!`)
	migrationClass        = lazy(`(?m)^\s*class\s+\S+\s*<\s*(?:::)?ActiveRecord::Migration\b`)
)

// fileTransaction reads whether migration version runs in a transaction
// from its file in paths (below root), for when Rails' message does not
// say: disable_ddl_transaction! takes it out, and MySQL never has one.
// Unknown, it says why, for the reason.
func fileTransaction(root string, paths []string, version, database string) (transaction, string) {
	if database == MySQL {
		return txNo, ""
	}
	if root == "" {
		root = "."
	}
	var found []string
	for _, e := range globMigrations(root, paths).Entries {
		if f, ok := ParseMigrationFilename(filepath.Base(e.Path)); ok && f.Version() == RubyToI(version) {
			found = append(found, e.Path)
		}
	}
	if len(found) == 0 {
		return txUnknown, "its file is not in the migrations paths migrun knows"
	}
	if database == "" {
		return txUnknown, "the error does not name the database"
	}
	for _, path := range found {
		src, err := os.ReadFile(path)
		switch {
		case err != nil:
			return txUnknown, "cannot read " + relTo(root, path)
		case disableDDLTransaction.re().Match(src):
			return txNo, ""
		case !migrationClass.re().Match(src):
			return txUnknown, relTo(root, path) + " does not inherit ActiveRecord::Migration directly"
		}
	}
	return txYes, ""
}
