package sessions

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/redact"
)

// This file watches the command's sessions from outside: who blocks them
// while they wait for a lock (issue 14, issue 13), and what a cancelled
// CREATE INDEX CONCURRENTLY left behind.

// DefaultStatementTimeout bounds each of the observer's statements
// (connecting included) when ObserverOptions does not say.
const DefaultStatementTimeout = 5 * time.Second

// maxQuery is how much of a blocker's query a Blocker keeps.
const maxQuery = 100

// ErrNotObservable: the observer was given a database it cannot watch (SQLite).
var ErrNotObservable = errors.New("not a PostgreSQL or MySQL database")

// ObserverOptions adjust an Observer.
type ObserverOptions struct {
	// Name is the observer's own application_name (PostgreSQL) and
	// program_name (MySQL), so that an operator can tell its session
	// apart; "" is "migrun observer".
	Name string
	// StatementTimeout bounds each statement, and each connection
	// attempt; 0 is DefaultStatementTimeout.
	StatementTimeout time.Duration
}

// Observer watches the migration command's database sessions from a
// connection of its own, opened at the first call and again after an
// error. It is not a lock connection: a statement's deadline may close it,
// and the next call reconnects. Its methods may be called from several
// goroutines; they take turns.
type Observer struct {
	u        *dburl.URL
	identity string
	name     string
	timeout  time.Duration

	mu     sync.Mutex
	pg     *pgx.Conn
	my     *sql.DB
	source mysqlSource // decided at the first MySQL call
	probed bool        // the account's view has been looked at (Limits)
	limits []string
}

// Observe returns an Observer for the database u names, whose command
// sessions are those with application_name commandIdentity (PostgreSQL:
// the command's PGAPPNAME, or the application_name its URL sets). MySQL
// sessions carry no name the command sets: there the command's session is
// the one waiting for a metadata lock with a DDL statement in u's
// database. Observe connects to nothing.
//
// The observer should use the command's own account (the same URL): a
// PostgreSQL role that is not in pg_read_all_stats cannot see whether
// another role's session waits.
func Observe(u *dburl.URL, commandIdentity string, opts ObserverOptions) *Observer {
	o := &Observer{u: u, identity: truncateAppName(commandIdentity), name: opts.Name, timeout: opts.StatementTimeout}
	if o.name == "" {
		o.name = "migrun observer"
	}
	if o.timeout <= 0 {
		o.timeout = DefaultStatementTimeout
	}
	return o
}

// CommandAppName is the application_name the command's PostgreSQL
// sessions on u have, for Observe: the URL's application_name parameter
// (Rails hands it to libpq, which prefers it to the environment), else
// the command's PGAPPNAME (environ is the command's environment); "" when
// neither names it.
func CommandAppName(u *dburl.URL, environ map[string]string) string {
	if name := u.Params["application_name"]; name != "" {
		return name
	}
	return environ["PGAPPNAME"]
}

// Blocker is a session that blocks one of the command's sessions.
type Blocker struct {
	// PID is the blocking session's backend pid (PostgreSQL:
	// pg_terminate_backend takes it) or connection id (MySQL: KILL).
	PID int64
	// Waiter is the command's session it blocks, and Waits what that one
	// waits for ("table users", "older transactions to end", ...; "" unknown).
	Waiter int64
	Waits  string
	// Application is its application_name; "" on MySQL, which does not
	// show connection attributes without performance_schema.
	Application string
	User        string
	Client      string // address:port, "local socket", or "" unknown
	// State is what it is doing: "idle in transaction", "active", ...
	State string
	// InTransaction is how long its transaction has been open; 0 unknown
	// or none.
	InTransaction time.Duration
	// Query is its current (PostgreSQL: or last) statement, on one line,
	// at most 100 characters; "" none or hidden.
	Query string
	// Hidden: the server hides this session's details from the
	// observer's account (see Limits).
	Hidden bool
	// Probable: the server does not show who holds MySQL's metadata
	// locks; this session's transaction began before the waiting
	// statement, so it may hold the lock that statement waits for.
	Probable bool

	connection bool // a MySQL connection id, not a PostgreSQL pid
}

// String is the blocker on one line, for logs and messages, e.g.
//
//	pid 4011 "web-7" user app from 10.0.3.4:51234, idle in transaction, transaction open 8s: SELECT count(*) FROM users
//	probably connection 42 user app from 10.0.3.4:40122, idle in transaction, transaction open 12s
func (b Blocker) String() string {
	var s strings.Builder
	if b.Probable {
		s.WriteString("probably ")
	}
	fmt.Fprintf(&s, "%s %d", b.kind(), b.PID)
	if b.Application != "" {
		fmt.Fprintf(&s, " %q", b.Application)
	}
	if b.User != "" {
		s.WriteString(" user " + b.User)
	}
	if b.Client != "" {
		s.WriteString(" from " + b.Client)
	}
	if b.Hidden {
		s.WriteString(" (details hidden from migrun's account)")
	}
	if b.State != "" {
		s.WriteString(", " + b.State)
	}
	if b.InTransaction > 0 {
		fmt.Fprintf(&s, ", transaction open %s", roughly(b.InTransaction))
	}
	if b.Query != "" {
		s.WriteString(": " + b.Query)
	}
	return s.String()
}

func (b Blocker) kind() string {
	if b.connection {
		return "connection"
	}
	return "pid"
}

// Blockers returns the sessions blocking the command's sessions right
// now, oldest transaction first; none when nothing of the command's
// waits. One statement, bounded by the statement timeout (the first call
// also connects and looks at what the account may see: Limits).
//
//   - PostgreSQL: for each session named commandIdentity waiting for a
//     lock, pg_blocking_pids (the holders of the lock it wants, and those
//     queued ahead of it), with pg_stat_activity's view of each.
//   - MySQL/MariaDB: for each session waiting for a metadata lock with a
//     DDL statement in the URL's database, the sessions holding a
//     metadata lock on its table, where the server shows them
//     (performance_schema.metadata_locks when enabled with its
//     wait/lock/metadata/sql/mdl instrument; MariaDB's
//     information_schema.METADATA_LOCK_INFO when the metadata_lock_info
//     plugin is loaded); else the sessions whose InnoDB transactions
//     began before the waiting statement, marked Probable.
func (o *Observer) Blockers(ctx context.Context) ([]Blocker, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.u.Adapter == dburl.PostgreSQL:
		return o.pgBlockers(ctx)
	case o.u.IsMySQL():
		return o.myBlockers(ctx)
	}
	return nil, ErrNotObservable
}

// InvalidIndexes returns the indexes PostgreSQL marks invalid (pg_index's
// indisvalid false: a CREATE INDEX CONCURRENTLY that failed or was
// cancelled, a REINDEX CONCURRENTLY's leftover, one being built right
// now) in every schema but the system's, as qualified names quoted where
// SQL needs it ("public.index_users_on_email"), sorted. MySQL has no such
// thing: none.
//
// Call it before the first attempt and after a failed one: the indexes
// that appeared in between are the attempt's (rails.Failure.InvalidIndexes).
func (o *Observer) InvalidIndexes(ctx context.Context) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.u.Adapter == dburl.PostgreSQL:
		var names []string
		err := o.pgQuery(ctx, func(ctx context.Context, conn *pgx.Conn) error {
			rows, err := conn.Query(ctx, pgInvalidIndexes)
			if err != nil {
				return err
			}
			names, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		return names, err
	case o.u.IsMySQL():
		return nil, nil
	}
	return nil, ErrNotObservable
}

// Limits says, once known (after the first Blockers that reached the
// server), what the observer cannot see from its account and why, one
// line each; empty when it sees everything it needs. Log it once.
func (o *Observer) Limits() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.limits...)
}

// Close closes the observer's connection, if any.
func (o *Observer) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var err error
	if o.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		err = o.pg.Close(ctx)
		cancel()
		o.pg = nil
	}
	if o.my != nil {
		err = errors.Join(err, o.my.Close())
		o.my = nil
	}
	return err
}

// --- PostgreSQL ------------------------------------------------------------

// pgBlockersSQL: the command's waiting sessions, each blocker of each,
// what the waiter waits for. pg_stat_activity shows another role's
// session without query, state, client or transaction start (and, for
// the waiter, without wait_event) unless the viewer is in
// pg_read_all_stats; its query then reads '<insufficient privilege>'.
const pgBlockersSQL = `
SELECT b.pid, w.pid,
       coalesce(w.wait_event, ''),
       coalesce((SELECT l.relation::regclass::text FROM pg_locks l
                 WHERE l.pid = w.pid AND NOT l.granted AND l.relation IS NOT NULL LIMIT 1), ''),
       coalesce(b.application_name, ''), coalesce(b.usename::text, ''),
       CASE WHEN b.client_addr IS NOT NULL THEN host(b.client_addr) || ':' || b.client_port
            WHEN b.client_port = -1 THEN 'local socket' ELSE '' END,
       coalesce(b.state, ''),
       coalesce(extract(epoch FROM clock_timestamp() - b.xact_start), 0)::float8,
       coalesce(left(b.query, 400), ''),
       coalesce(b.query = '<insufficient privilege>', false)
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
JOIN pg_stat_activity b ON b.pid = bp.pid
WHERE w.application_name = $1 AND w.wait_event_type = 'Lock' AND w.pid <> pg_backend_pid()
ORDER BY b.xact_start NULLS LAST, b.pid
LIMIT 20`

// pgInvalidIndexes: every invalid index outside the system's schemas.
const pgInvalidIndexes = `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
ORDER BY 1`

// pgCanSeeAll: may the observer's role see every session's details?
const pgCanSeeAll = `
SELECT current_user::text,
       coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
       OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_read_all_stats')
           AND pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'))`

func (o *Observer) pgBlockers(ctx context.Context) ([]Blocker, error) {
	var out []Blocker
	err := o.pgQuery(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		if !o.probed {
			var user string
			var all bool
			if err := conn.QueryRow(ctx, pgCanSeeAll).Scan(&user, &all); err != nil {
				return err
			}
			o.probed = true
			if !all {
				o.limits = append(o.limits, fmt.Sprintf("role %s is not in pg_read_all_stats: blockers of other roles show their pid, role and application name but not their query, state, client or transaction age (GRANT pg_read_all_stats TO %s)", user, user))
			}
		}
		rows, err := conn.Query(ctx, pgBlockersSQL, o.identity)
		if err != nil {
			return err
		}
		out = nil
		for rows.Next() {
			var b Blocker
			var event, relation, query string
			var age float64
			if err := rows.Scan(&b.PID, &b.Waiter, &event, &relation, &b.Application, &b.User, &b.Client, &b.State, &age, &query, &b.Hidden); err != nil {
				rows.Close()
				return err
			}
			b.Waits = pgWaits(event, relation)
			b.InTransaction = seconds(age)
			if !b.Hidden {
				b.Query = oneLine(redact.SQLLiterals(query, false))
			}
			out = append(out, b)
		}
		return rows.Err()
	})
	return out, err
}

// pgWaits names what a session waits for from its wait_event and the
// relation it has not been granted.
func pgWaits(event, relation string) string {
	switch {
	case relation != "":
		return "table " + relation
	case event == "virtualxid":
		return "older transactions to end (CREATE INDEX CONCURRENTLY)"
	case event == "transactionid" || event == "tuple":
		return "a row another transaction holds"
	case event == "advisory":
		return "an advisory lock"
	case event != "":
		return event + " lock"
	}
	return ""
}

// pgQuery runs f on the observer's connection (connecting first when
// there is none) within one statement timeout. An error other than the
// server's answer drops the connection; the next call reconnects.
func (o *Observer) pgQuery(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.pg == nil || o.pg.IsClosed() {
		cfg, err := dbconn.PostgresConfig(o.u)
		if err != nil {
			return err
		}
		dbconn.PostgresIdentity(cfg, o.name)
		conn, err := dbconn.ConnectPostgres(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("observer: connect to %s: %w", dbconn.PostgresAddr(o.u), ctx.Err())
			}
			return fmt.Errorf("observer: connect to %s: %w", dbconn.PostgresAddr(o.u), dbconn.ClassifyPostgres(err, cfg))
		}
		o.pg = conn
	}
	err := f(ctx, o.pg)
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		_ = o.pg.Close(context.WithoutCancel(ctx))
		o.pg = nil
	}
	return fmt.Errorf("observer: %s: %w", dbconn.PostgresAddr(o.u), queryError(err))
}

// truncateAppName cuts name as PostgreSQL keeps application_name (63
// bytes), so that a long identity still matches.
func truncateAppName(name string) string {
	if len(name) <= 63 {
		return name
	}
	name = name[:63]
	for !utf8.ValidString(name) {
		name = name[:len(name)-1]
	}
	return name
}

// --- MySQL / MariaDB -------------------------------------------------------

// mysqlSource is where a MySQL server shows metadata-lock holders.
type mysqlSource int

const (
	sourceUnknown    mysqlSource = iota
	sourceNone                   // neither: infer from InnoDB transactions
	sourcePerfSchema             // performance_schema.metadata_locks
	sourcePlugin                 // MariaDB's information_schema.METADATA_LOCK_INFO
)

// myWaiter finds the command's waiting session w: a DDL statement waiting
// for a metadata lock in the command's database.
const myWaiter = `w.COMMAND = 'Query' AND w.STATE = 'Waiting for table metadata lock' AND w.DB = ?
  AND w.ID <> CONNECTION_ID()
  AND UPPER(LEFT(LTRIM(w.INFO), 8)) REGEXP '^(ALTER|CREATE|DROP|RENAME|TRUNCATE|OPTIMIZE|LOCK)'`

// myHolderColumns are what every query returns: the waiter, the holder
// and the holder's details (NULL where the account cannot see them).
const myHolderColumns = `w.ID, h.id, hp.USER, hp.HOST, hp.COMMAND, hp.STATE, LEFT(hp.INFO, 400), %s`

// myExactSQL lists each waiting DDL statement with the sessions holding a
// metadata lock on its object (h.id NULL when the server shows none).
func myExactSQL(source mysqlSource, process bool) string {
	var pairs string
	switch source {
	case sourcePerfSchema:
		// The waiter's PENDING lock, and the GRANTED ones on the same object.
		pairs = `SELECT wt.PROCESSLIST_ID AS waiter, ht.PROCESSLIST_ID AS id
  FROM performance_schema.metadata_locks wl
  JOIN performance_schema.threads wt ON wt.THREAD_ID = wl.OWNER_THREAD_ID
  JOIN performance_schema.metadata_locks hl ON hl.OBJECT_TYPE = wl.OBJECT_TYPE
    AND hl.OBJECT_SCHEMA <=> wl.OBJECT_SCHEMA AND hl.OBJECT_NAME <=> wl.OBJECT_NAME
    AND hl.LOCK_STATUS = 'GRANTED' AND hl.OWNER_THREAD_ID <> wl.OWNER_THREAD_ID
  JOIN performance_schema.threads ht ON ht.THREAD_ID = hl.OWNER_THREAD_ID
  WHERE wl.LOCK_STATUS = 'PENDING' AND wl.OBJECT_TYPE = 'TABLE'`
	case sourcePlugin:
		// Only granted locks show: an ALTER holds its table's
		// SHARED_UPGRADABLE lock while it waits to upgrade it.
		pairs = `SELECT wl.THREAD_ID AS waiter, hl.THREAD_ID AS id
  FROM information_schema.METADATA_LOCK_INFO wl
  JOIN information_schema.METADATA_LOCK_INFO hl ON hl.TABLE_SCHEMA = wl.TABLE_SCHEMA
    AND hl.TABLE_NAME = wl.TABLE_NAME AND hl.THREAD_ID <> wl.THREAD_ID
    AND hl.LOCK_TYPE = 'Table metadata lock'
  WHERE wl.LOCK_TYPE = 'Table metadata lock'`
	}
	age, trx := "NULL", ""
	if process {
		age = "TIMESTAMPDIFF(SECOND, t.trx_started, NOW())"
		trx = "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = h.id\n"
	}
	return `SELECT DISTINCT ` + fmt.Sprintf(myHolderColumns, age) + `
FROM information_schema.PROCESSLIST w
LEFT JOIN (` + pairs + `) h ON h.waiter = w.ID
LEFT JOIN information_schema.PROCESSLIST hp ON hp.ID = h.id
` + trx + `WHERE ` + myWaiter + `
ORDER BY 8 DESC
LIMIT 40`
}

// myProbableSQL lists, for each waiting DDL statement, the sessions of
// its database whose InnoDB transaction began before it started waiting
// (PROCESSLIST's TIME: whole seconds in its current state). A transaction
// that reads the table from another database is missed; one that began
// within the waiting statement's first second may be listed wrongly.
// Needs PROCESS for INNODB_TRX.
const myProbableSQL = `SELECT w.ID, t.trx_mysql_thread_id, hp.USER, hp.HOST, hp.COMMAND, hp.STATE, LEFT(hp.INFO, 400),
       TIMESTAMPDIFF(SECOND, t.trx_started, NOW())
FROM information_schema.PROCESSLIST w
JOIN information_schema.INNODB_TRX t ON t.trx_started <= NOW() - INTERVAL w.TIME SECOND
LEFT JOIN information_schema.PROCESSLIST hp ON hp.ID = t.trx_mysql_thread_id
WHERE ` + myWaiter + `
  AND t.trx_mysql_thread_id <> w.ID AND t.trx_mysql_thread_id <> CONNECTION_ID() AND hp.DB <=> w.DB
ORDER BY t.trx_started
LIMIT 20`

func (o *Observer) myBlockers(ctx context.Context) ([]Blocker, error) {
	db, err := o.myDB()
	if err != nil {
		return nil, err
	}
	if o.source == sourceUnknown {
		if err := o.myProbe(ctx, db); err != nil {
			return nil, err
		}
	}
	process := !o.hasLimit(noProcess)
	var out []Blocker
	unexplained := false
	if o.source != sourceNone {
		rows, err := o.myRows(ctx, db, myExactSQL(o.source, process), false)
		if err != nil {
			return nil, err
		}
		for _, b := range rows {
			if b.PID == 0 {
				unexplained = true
				continue
			}
			out = append(out, b)
		}
	}
	// Nothing shows who holds the lock: infer (a second statement only
	// when something waits and the server said nothing of it).
	if (o.source == sourceNone || unexplained && len(out) == 0) && process {
		return o.myRows(ctx, db, myProbableSQL, true)
	}
	return out, nil
}

const noProcess = "no PROCESS privilege"

func (o *Observer) hasLimit(prefix string) bool {
	for _, l := range o.limits {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// myProbe finds out, once, where the server shows metadata-lock holders
// and whether the account sees other sessions.
func (o *Observer) myProbe(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var process, perf, plugin bool
	var n int
	// Not "WHERE 1 = 0": MariaDB checks the privilege only when it reads.
	switch err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.INNODB_TRX").Scan(&n); {
	case err == nil:
		process = true
	case isMySQLError(err, 1227): // access denied: needs PROCESS
	default:
		return o.myError(err)
	}
	var on sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT @@performance_schema").Scan(&on); err != nil {
		return o.myError(err)
	}
	if on.Int64 == 1 {
		var enabled string
		err := db.QueryRowContext(ctx, "SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = 'wait/lock/metadata/sql/mdl'").Scan(&enabled)
		switch {
		case err == nil:
			perf = enabled == "YES"
		case errors.Is(err, sql.ErrNoRows), isMySQLError(err, 1142): // no instrument; no SELECT on performance_schema
		default:
			return o.myError(err)
		}
	}
	if !perf {
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'").Scan(&n)
		if err != nil {
			return o.myError(err)
		}
		plugin = n > 0
	}
	switch {
	case perf:
		o.source = sourcePerfSchema
	case plugin:
		o.source = sourcePlugin
	default:
		o.source = sourceNone
	}
	o.probed = true
	if !process {
		o.limits = append(o.limits, noProcess+": other accounts' sessions and every open transaction are invisible to migrun's account, so what blocks a migration cannot be named (GRANT PROCESS ON *.* TO the migration's user)")
	}
	if o.source == sourceNone {
		o.limits = append(o.limits, "the server does not show who holds metadata locks (performance_schema with the wait/lock/metadata/sql/mdl instrument, or MariaDB's metadata_lock_info plugin): blockers are the sessions whose transactions began before the waiting statement, marked probable")
	}
	return nil
}

// myRows runs one of the blocker queries.
func (o *Observer) myRows(ctx context.Context, db *sql.DB, query string, probable bool) ([]Blocker, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	rows, err := db.QueryContext(ctx, query, o.u.Database)
	if err != nil {
		return nil, o.myError(err)
	}
	defer rows.Close()
	var out []Blocker
	seen := map[[2]int64]bool{}
	for rows.Next() {
		var waiter int64
		var holder, age sql.NullInt64
		var user, host, command, state, info sql.NullString
		if err := rows.Scan(&waiter, &holder, &user, &host, &command, &state, &info, &age); err != nil {
			return nil, o.myError(err)
		}
		key := [2]int64{waiter, holder.Int64}
		if seen[key] {
			continue
		}
		seen[key] = true
		b := Blocker{PID: holder.Int64, Waiter: waiter, Waits: "a table's metadata lock", Probable: probable, Hidden: holder.Valid && !user.Valid, connection: true,
			User: user.String, Client: host.String, Query: oneLine(redact.SQLLiterals(info.String, true))}
		if age.Valid && age.Int64 >= 0 {
			b.InTransaction = time.Duration(age.Int64) * time.Second
		}
		b.State = myState(command.String, state.String, age.Valid)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, o.myError(err)
	}
	return out, nil
}

// myState words a session's COMMAND and STATE: a sleeping session with an
// open transaction is what PostgreSQL calls idle in transaction.
func myState(command, state string, inTransaction bool) string {
	switch {
	case command == "Sleep" && inTransaction:
		return "idle in transaction"
	case command == "Sleep":
		return "idle"
	case command != "" && state != "":
		return strings.ToLower(command) + " (" + state + ")"
	}
	return strings.ToLower(command)
}

func (o *Observer) myDB() (*sql.DB, error) {
	if o.my != nil {
		return o.my, nil
	}
	cfg, err := dbconn.MySQLConfig(o.u)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = o.timeout
	dbconn.MySQLIdentity(cfg, o.name)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector) // connects at the first statement, again after a broken one
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	o.my = db
	return db, nil
}

func (o *Observer) myError(err error) error {
	return fmt.Errorf("observer: %s: %w", dbconn.MySQLAddr(o.u), dbconn.ClassifyMySQL(err))
}

func isMySQLError(err error, number uint16) bool {
	var myErr *mysql.MySQLError
	return errors.As(err, &myErr) && myErr.Number == number
}

// --- shared ----------------------------------------------------------------

// oneLine is a query on one line, its white space runs made one space,
// cut to maxQuery characters.
func oneLine(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if utf8.RuneCountInString(q) <= maxQuery {
		return q
	}
	r := []rune(q)
	return string(r[:maxQuery-1]) + "…"
}

// roughly rounds d for people: whole seconds, tenths below one.
func roughly(d time.Duration) time.Duration {
	if d < time.Second {
		return max(d.Round(100*time.Millisecond), 100*time.Millisecond)
	}
	return d.Round(time.Second)
}

func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
