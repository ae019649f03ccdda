package lock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/redact"
)

// DefaultProgressInterval is Options.ProgressInterval's default.
const DefaultProgressInterval = 30 * time.Second

// TimeoutError is Lock's error when ctx's deadline passed before the lock
// was acquired. It wraps ErrTimeout and says who held the lock when the
// waiter last looked.
type TimeoutError struct {
	// Holder describes the holder as the waiter last saw it (see
	// Inspection.Holder); "" when it could not tell.
	Holder string
}

func (e *TimeoutError) Error() string {
	if e.Holder == "" {
		return ErrTimeout.Error()
	}
	return ErrTimeout.Error() + "; held by " + e.Holder
}

func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// holder is who holds the lock, as far as the looking account can see.
type holder struct {
	id       int64  // PostgreSQL backend pid, MySQL connection id
	identity string // application_name, program_name
	user     string
	client   string // the client's address
	since    string // e.g. "connected 3m2s ago", "" unknown
	// hidden: the account may not see the holder's details; hint says
	// what would let it.
	hidden bool
	hint   string
	// migration is what the holder's migration session is doing, ""
	// when none was found.
	migration string
}

// String is the holder in one line, e.g.
//
//	"migrun web-1 7" (pid 4242, user app, client 10.0.0.5, connected 5m3s ago); its migration session: pid 4250, active for 4m58s, waiting for Lock:relation, query "CREATE INDEX …"
func (h holder) String() string {
	var b strings.Builder
	var parts []string
	if h.identity != "" {
		fmt.Fprintf(&b, "%q", h.identity)
		parts = append(parts, fmt.Sprintf("%s %d", h.idWord(), h.id))
	} else {
		fmt.Fprintf(&b, "%s %d", h.idWord(), h.id)
	}
	for _, p := range []string{prefixed("user ", h.user), prefixed("client ", h.client), h.since} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if h.hidden {
		parts = append(parts, "details hidden from this account")
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	if h.migration != "" {
		b.WriteString("; its migration session: " + h.migration)
	}
	return b.String()
}

func (h holder) idWord() string {
	if h.hint == mysqlHint {
		return "connection"
	}
	return "pid"
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// What would let an account see other sessions' details.
const (
	postgresHint = "PostgreSQL shows other roles' sessions only to members of pg_read_all_stats"
	mysqlHint    = "MySQL and MariaDB show other users' connections only with the PROCESS privilege"
)

// ago is d in whole seconds (tenths under ten seconds).
func ago(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// secs turns a number of seconds from the server into a duration.
func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// describer finds the holder of the lock on the waiter's connection:
// found false when the lock is free by now.
type describer func(ctx context.Context) (h holder, found bool, err error)

// waitReport says, while a runner waits, who holds the lock: when it
// first finds the lock held, and then every ProgressInterval with the
// time waited and the time left. It keeps the last description for the
// TimeoutError. Describing never fails the wait: a description that
// cannot be had is said once, and the wait goes on.
type waitReport struct {
	log        *slog.Logger
	beforeWait func() // Options.BeforeWait
	lock       string
	every      time.Duration
	start      time.Time
	next       time.Time // the next progress line; zero before the first line
	last       string    // the last description of the holder
	hiddenSaid bool
	failSaid   bool
}

func newWaitReport(opts Options, lock string) *waitReport {
	return &waitReport{log: opts.Logger, beforeWait: opts.BeforeWait, lock: lock, every: opts.ProgressInterval, start: time.Now()}
}

// held is called each time a try finds the lock held: it describes the
// holder and logs it when a line is due (the first time after
// Options.BeforeWait).
func (w *waitReport) held(ctx context.Context, describe describer) {
	now := time.Now()
	first := w.next.IsZero()
	if !first && now.Before(w.next) {
		return
	}
	w.next = now.Add(w.every)
	if first && w.beforeWait != nil {
		w.beforeWait()
	}
	attrs := []any{"lock", w.lock}
	h, found, err := describe(ctx)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		if !w.failSaid {
			w.failSaid = true
			w.log.Warn("cannot find out who holds the lock; waiting all the same", "lock", w.lock, "err", dbconn.LastLine(err))
		}
	case found:
		w.last = h.String()
		if h.hidden && !w.hiddenSaid {
			w.hiddenSaid = true
			w.log.Info("this database account cannot see other sessions' details; the holder is described as far as it can be ("+h.hint+")", "lock", w.lock)
		}
	}
	if w.last != "" {
		attrs = append(attrs, "holder", w.last)
	}
	if first {
		w.log.Info("lock is held by another runner; waiting", attrs...)
		return
	}
	attrs = append(attrs, "waited", now.Sub(w.start).Round(time.Second))
	if dl, ok := ctx.Deadline(); ok {
		attrs = append(attrs, "left", max(time.Until(dl), 0).Round(time.Second))
	}
	w.log.Info("still waiting for the lock", attrs...)
}

// untilNext bounds a wait so that the next progress line is on time:
// zero before the first line, never less than a little after.
func (w *waitReport) untilNext() time.Duration {
	if w.next.IsZero() {
		return 0
	}
	return max(time.Until(w.next), 50*time.Millisecond)
}

// outcome turns ErrTimeout into a *TimeoutError naming the last holder.
func (w *waitReport) outcome(err error) error {
	if errors.Is(err, ErrTimeout) && !errors.As(err, new(*TimeoutError)) {
		return &TimeoutError{Holder: w.last}
	}
	return err
}

// describePostgres finds the session that holds the advisory lock
// (k1, k2) and, when commandName names the sessions of the holder's
// command, what the most active of those is doing. Statements that
// take nothing.
func describePostgres(ctx context.Context, conn *pgx.Conn, k1, k2 int32, mode Mode, commandName func(string) string) (holder, bool, error) {
	var (
		h                   holder
		backendAge, xactAge float64
	)
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
		coalesce(host(a.client_addr), CASE WHEN a.backend_start IS NOT NULL THEN 'local socket' END, ''),
		coalesce(extract(epoch FROM now() - a.backend_start)::float8, -1),
		coalesce(extract(epoch FROM now() - a.xact_start)::float8, -1),
		coalesce(a.query = '<insufficient privilege>', true)
	FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'advisory' AND l.classid = %d::oid AND l.objid = %d::oid AND l.objsubid = 2 AND l.granted
	LIMIT 1`, uint32(k1), uint32(k2))).Scan(&h.id, &h.identity, &h.user, &h.client, &backendAge, &xactAge, &h.hidden)
	if errors.Is(err, pgx.ErrNoRows) {
		return holder{}, false, nil
	}
	if err != nil {
		return holder{}, false, err
	}
	h.hint = postgresHint
	switch {
	case mode == ModeTransaction && xactAge >= 0:
		h.since = "holding it for " + ago(secs(xactAge)) // its transaction took the lock first thing
	case backendAge >= 0:
		h.since = "connected " + ago(secs(backendAge)) + " ago"
	}
	name := ""
	if commandName != nil && h.identity != "" {
		name = commandName(h.identity)
	}
	if name == "" {
		return h, true, nil
	}
	var (
		pid                int32
		state, wait, query string
		hidden             bool
		age                float64
	)
	err = conn.QueryRow(ctx, `SELECT pid, coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, ''),
		coalesce(left(regexp_replace(query, '\s+', ' ', 'g'), 80), ''), coalesce(query = '<insufficient privilege>', true),
		coalesce(extract(epoch FROM now() - CASE WHEN state = 'active' THEN query_start ELSE state_change END)::float8, -1)
	FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2
	ORDER BY state = 'active' DESC, query_start DESC NULLS LAST
	LIMIT 1`, name, h.id).Scan(&pid, &state, &wait, &query, &hidden, &age)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return h, true, nil
	case err != nil:
		return h, true, err
	}
	m := fmt.Sprintf("pid %d", pid)
	if hidden {
		m += ", details hidden from this account"
		h.hidden = true
	} else {
		if state != "" {
			m += ", " + state
			if age >= 0 {
				m += " for " + ago(secs(age))
			}
		}
		if wait != "" {
			m += ", waiting for " + wait
		}
		if query != "" {
			m += fmt.Sprintf(", query %q", redact.SQLLiterals(query, false))
		}
	}
	h.migration = m
	return h, true, nil
}

// describeMySQL finds the connection that holds the named lock
// (IS_USED_LOCK) and what the process list shows of it: all of it
// with the PROCESS privilege, nothing of another user's without. Its
// program_name connection attribute comes from performance_schema
// where that is on and readable.
func describeMySQL(ctx context.Context, conn *sql.Conn, name string) (holder, bool, error) {
	var (
		id                sql.NullInt64
		user, host, state sql.NullString
		command, info     sql.NullString
		age               sql.NullInt64
		visible           bool
	)
	err := conn.QueryRowContext(ctx, `SELECT l.id, p.USER, p.HOST, p.TIME, p.STATE, p.COMMAND, LEFT(p.INFO, 80), p.ID IS NOT NULL
		FROM (SELECT IS_USED_LOCK(?) AS id) l LEFT JOIN information_schema.PROCESSLIST p ON p.ID = l.id`, name).
		Scan(&id, &user, &host, &age, &state, &command, &info, &visible)
	if err != nil {
		return holder{}, false, err
	}
	if !id.Valid {
		return holder{}, false, nil
	}
	h := holder{id: id.Int64, user: user.String, client: host.String, hidden: !visible, hint: mysqlHint}
	if visible {
		what := "idle"
		if command.String != "Sleep" {
			what = strings.ToLower(command.String)
			if state.String != "" {
				what += " (" + state.String + ")"
			}
		}
		h.since = fmt.Sprintf("%s for %s", what, ago(time.Duration(age.Int64)*time.Second))
		if info.String != "" {
			h.since += fmt.Sprintf(", query %q", redact.SQLLiterals(info.String, true))
		}
	}
	// Optional: performance_schema may be off, or not ours to read.
	var program sql.NullString
	err = conn.QueryRowContext(ctx, `SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs
		WHERE PROCESSLIST_ID = ? AND ATTR_NAME = 'program_name'`, id.Int64).Scan(&program)
	if err == nil {
		h.identity = program.String
	} else if ctx.Err() != nil {
		return holder{}, false, err
	}
	return h, true, nil
}

// Inspection is what Inspect found.
type Inspection struct {
	Server string // the server's version, e.g. "15.13 (Debian 15.13-0+deb12u1)", "10.11.11-MariaDB-0+deb12u1"
	Held   bool
	// Holder describes who holds it, as far as the account can see
	// (e.g. `"migrun web-1 7" (pid 4242, user app, client 10.0.0.5,
	// connected 5m3s ago)`); "" when the lock is free.
	Holder string
}

// Inspect connects to the lock's database once, within ctx, and reports
// its version and whether the lock of opts.Name is held and by whom,
// without taking it (PostgreSQL: pg_locks; MySQL/MariaDB: IS_USED_LOCK):
// for a person looking into a deploy. With ModeNone it reports the
// server only. It fails with ErrUnavailable when the database cannot be
// reached or refuses us, ErrUnsupported when there is no database
// server to look at (no URL, sqlite3).
func Inspect(ctx context.Context, u *dburl.URL, opts Options) (Inspection, error) {
	opts = opts.withDefaults()
	if u == nil || u.Adapter == dburl.SQLite3 {
		return Inspection{}, fmt.Errorf("%w: no database server to look at", ErrUnsupported)
	}
	if opts.Name == "" && opts.Mode != ModeNone {
		return Inspection{}, fmt.Errorf("%w: empty lock name", ErrUnsupported)
	}
	switch {
	case u.Adapter == dburl.PostgreSQL:
		return inspectPostgres(ctx, u, opts)
	case u.IsMySQL():
		return inspectMySQL(ctx, u, opts)
	}
	return Inspection{}, fmt.Errorf("%w: no lock for adapter %s", ErrUnsupported, u.Adapter)
}

func inspectPostgres(ctx context.Context, u *dburl.URL, opts Options) (Inspection, error) {
	cfg, err := dbconn.PostgresConfig(u)
	if err != nil {
		return Inspection{}, err
	}
	dbconn.PostgresIdentity(cfg, opts.Identity)
	conn, err := dbconn.ConnectPostgres(ctx, cfg)
	if err != nil {
		return Inspection{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, dbconn.PostgresAddr(u), dbconn.ClassifyPostgres(err, cfg))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p := newPostgres(u, opts, Timing{})
	out := Inspection{Server: conn.PgConn().ParameterStatus("server_version")}
	if opts.Mode == ModeNone {
		return out, nil
	}
	h, found, err := describePostgres(ctx, conn, p.k1, p.k2, opts.Mode, opts.CommandIdentity)
	if err != nil {
		return out, fmt.Errorf("look at %s: %s", p.String(), dbconn.LastLine(err))
	}
	if found {
		out.Held, out.Holder = true, h.String()
	}
	return out, nil
}

func inspectMySQL(ctx context.Context, u *dburl.URL, opts Options) (Inspection, error) {
	cfg, err := dbconn.MySQLConfig(u)
	if err != nil {
		return Inspection{}, err
	}
	dbconn.MySQLIdentity(cfg, opts.Identity)
	cfg.InterpolateParams = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return Inspection{}, fmt.Errorf("%w: mysql connection settings: %s", ErrUnsupported, dbconn.LastLine(err))
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return Inspection{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, dbconn.MySQLAddr(u), dbconn.ClassifyMySQL(err))
	}
	defer conn.Close()
	out := Inspection{}
	if err := conn.QueryRowContext(ctx, "SELECT VERSION()").Scan(&out.Server); err != nil {
		return out, fmt.Errorf("ask the server's version: %s", dbconn.LastLine(err))
	}
	if opts.Mode == ModeNone {
		return out, nil
	}
	m := newMySQL(u, opts, Timing{})
	h, found, err := describeMySQL(ctx, conn, m.name)
	if err != nil {
		return out, fmt.Errorf("look at %s: %s", m.String(), dbconn.LastLine(err))
	}
	if found {
		out.Held, out.Holder = true, h.String()
	}
	return out, nil
}
