package lock

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// maxLockName is MySQL's limit on GET_LOCK names (MariaDB allows more).
const maxLockName = 64

// getLockChunk bounds one GET_LOCK wait, so a waiter notices a cancelled
// context or a dead connection within it.
const getLockChunk = 5 * time.Second

// myLocker holds a MySQL/MariaDB named lock (GET_LOCK) on one dedicated
// connection. Rails names its own lock with a decimal number, ours starts
// with "migrun:", so the two never collide.
type myLocker struct {
	ka     *keepAlive
	u      *dburl.URL
	opts   Options
	timing Timing
	name   string
	db     *sql.DB
	conn   *sql.Conn
	raw    net.Conn // the socket under conn, watched between checks
	held   bool
	// fresh: nothing has run on conn yet; the session's settings and
	// the server's uptime go with its first statement.
	fresh bool
	// lostConn: a connection of this runner broke while it waited; its
	// next connection's first try may take a lock a lost server freed.
	lostConn   bool
	noSettings bool // the server refused the session's settings (warned once)
	budget     *budget
	// started estimates when the server started, from its Uptime; zero
	// when unknown.
	started time.Time
	report  *waitReport // while Lock waits
}

func newMySQL(u *dburl.URL, opts Options, timing Timing) *myLocker {
	m := &myLocker{u: u, opts: opts, timing: timing, name: mysqlLockName(opts.Name)}
	m.ka = newKeepAlive(timing, opts.Logger, m.String())
	return m
}

// mysqlLockName is "migrun:"+name, cut to 64 bytes with a hash of the
// whole name when longer, so distinct long names stay distinct.
func mysqlLockName(name string) string {
	full := "migrun:" + name
	if len(full) <= maxLockName {
		return full
	}
	sum := sha256.Sum256([]byte(name))
	suffix := ":" + hex.EncodeToString(sum[:])[:16]
	prefix := full[:maxLockName-len(suffix)]
	for !utf8.ValidString(prefix) {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + suffix
}

func (m *myLocker) String() string {
	return fmt.Sprintf("mysql named lock %q on %s", m.name, dbconn.MySQLAddr(m.u))
}

func (m *myLocker) Lost() <-chan struct{} { return m.ka.Lost() }
func (m *myLocker) Err() error            { return m.ka.Err() }

func (m *myLocker) connect(ctx context.Context) error {
	cfg, err := dbconn.MySQLConfig(m.u)
	if err != nil {
		return err
	}
	dbconn.MySQLIdentity(cfg, m.opts.Identity)
	// One COM_QUERY per statement (no prepare and close round trips), and
	// the session's settings in the same message as the first try.
	cfg.InterpolateParams = true
	cfg.MultiStatements = true
	dp := dbconn.DeadPeerWithin(m.timing.ServerBound)
	var raw net.Conn
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dp.Dial(ctx, network, addr)
		raw = c
		return c, err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("%w: mysql connection settings: %s", ErrUnsupported, dbconn.LastLine(err))
	}
	return m.opts.retry(ctx, m.budget, func(ctx context.Context) error {
		db := sql.OpenDB(connector)
		db.SetMaxOpenConns(1)
		conn, err := db.Conn(ctx) // connects: the handshake is the server's answer
		if err != nil {
			db.Close()
			return dbconn.ClassifyMySQL(err)
		}
		m.db, m.conn, m.raw, m.fresh, m.started = db, conn, raw, true, time.Time{}
		return nil
	})
}

func (m *myLocker) Lock(ctx context.Context) error {
	m.report = newWaitReport(m.opts, m.String())
	return m.report.outcome(m.lock(ctx))
}

func (m *myLocker) lock(ctx context.Context) error {
	m.budget = newBudget(m.opts.ConnectTimeout, dbconn.MySQLAddr(m.u))
	for {
		if m.conn == nil {
			if err := m.connect(ctx); err != nil {
				return err
			}
		}
		firstAfterLoss := m.fresh && m.lostConn
		got, err := m.try(ctx)
		if err != nil {
			if ctx.Err() != nil {
				m.close()
				return ctxErr(ctx)
			}
			if errors.Is(err, ErrUnavailable) {
				m.close()
				return err
			}
			var myErr *mysql.MySQLError
			if errors.As(err, &myErr) && !m.gone(err) {
				m.close()
				return fmt.Errorf("acquire %s: %s (error %d)", m.String(), myErr.Message, myErr.Number)
			}
			m.opts.Logger.Warn("lock connection lost while waiting; reconnecting", "lock", m.String(), "err", dbconn.LastLine(err))
			m.close()
			m.lostConn = true
			continue
		}
		m.lostConn = false
		if got.ok {
			return m.acquired(ctx, got, firstAfterLoss)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
			m.close()
			return ErrTimeout
		}
		m.report.held(ctx, m.describe)
		if got.waited == 0 {
			// The budget left no room for the server to wait: do it here.
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				m.close()
				return err
			}
		}
	}
}

// describe finds the holder on the waiter's connection, bounded like
// every statement of a waiter.
func (m *myLocker) describe(ctx context.Context) (holder, bool, error) {
	sctx, cancel, err := m.budget.statement(ctx, 0)
	if err != nil {
		return holder{}, false, err
	}
	defer cancel()
	h, found, err := describeMySQL(sctx, m.conn, m.name)
	if err == nil {
		m.budget.answered(time.Now())
	}
	return h, found, err
}

// myTry is what one GET_LOCK found.
type myTry struct {
	ok         bool
	waited     int64 // seconds the server was asked to wait
	sent, answ time.Time
}

// settingsRefused reports whether number is the error of a SET the
// server refuses: unknown variable, access denied, wrong value or type,
// wrong scope.
func settingsRefused(number uint16) bool {
	switch number {
	case 1193, 1227, 1231, 1232, 1238:
		return true
	}
	return false
}

// try waits for the lock at most one chunk, in whole seconds (MySQL's
// GET_LOCK takes no fractions), never past ctx's deadline by more than
// the rounding, and leaving a second of the budget for the answer.
func (m *myLocker) try(ctx context.Context) (myTry, error) {
	// Not past the next progress line (the first try: at most a second).
	wait := min(getLockChunk, m.report.untilNext())
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	room := int64((time.Until(m.budget.deadline()) - time.Second) / time.Second)
	secs = max(min(secs, room), 0)
	sctx, cancel, err := m.budget.statement(ctx, time.Duration(secs)*time.Second)
	if err != nil {
		return myTry{}, err
	}
	defer cancel()

	// MySQL's max_execution_time would cut the wait short; its hint
	// overrides it (0 would not: it means "use the variable"), MariaDB
	// ignores it (and has max_statement_time switched off instead).
	query := fmt.Sprintf("SELECT /*+ MAX_EXECUTION_TIME(%d) */ GET_LOCK(?, ?)", (time.Duration(secs)*time.Second+maxStatement)/time.Millisecond)
	fresh := m.fresh
	withSettings := fresh && !m.noSettings
	if fresh {
		query = "SHOW GLOBAL STATUS LIKE 'Uptime';\n" + query
	}
	if withSettings {
		query = mySettingsSQL(m.timing) + ";\n" + query
	}
	r := myTry{waited: secs, sent: time.Now()}
	rows, err := m.conn.QueryContext(sctx, query, m.name, secs)
	m.fresh = false
	if err != nil {
		var myErr *mysql.MySQLError
		if withSettings && errors.As(err, &myErr) && settingsRefused(myErr.Number) {
			m.opts.Logger.Warn("the database refused the lock session's settings; the lock is not protected from the server's wait_timeout and statement time limits",
				"lock", m.String(), "err", fmt.Sprintf("%s (error %d)", myErr.Message, myErr.Number))
			m.noSettings, m.fresh = true, true
			return m.try(ctx)
		}
		return myTry{}, err
	}
	defer rows.Close()
	if fresh {
		var name, value string
		for rows.Next() {
			if err := rows.Scan(&name, &value); err != nil {
				return myTry{}, err
			}
		}
		if up, err := strconv.ParseInt(value, 10, 64); err == nil {
			m.started = time.Now().Add(-time.Duration(up) * time.Second)
		}
		if !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return myTry{}, err
			}
			return myTry{}, errors.New("no answer to GET_LOCK")
		}
	}
	var got sql.NullInt64
	for rows.Next() {
		if err := rows.Scan(&got); err != nil {
			return myTry{}, err
		}
	}
	if err := rows.Err(); err != nil {
		return myTry{}, err
	}
	r.answ = time.Now()
	m.budget.answered(r.answ)
	if !got.Valid {
		return myTry{}, fmt.Errorf("GET_LOCK(%q) returned NULL", m.name)
	}
	r.ok = got.Int64 == 1
	return r, nil
}

// mySettingsSQL makes the lock's session end for nothing but a vanished
// (or frozen) client: wait_timeout (and interactive_timeout, for an
// interactive client) ServerBound, which keep-alive checks every
// KeepAlive stay well inside; packet read and write timeouts no shorter;
// and MariaDB's max_statement_time off (the versioned comment is
// MariaDB's only: MySQL does not know the variable).
func mySettingsSQL(t Timing) string {
	l := int(t.ServerBound / time.Second)
	return fmt.Sprintf("SET SESSION wait_timeout = %d, interactive_timeout = %d, net_read_timeout = %d, net_write_timeout = %d /*M!100108 , max_statement_time = 0 */", l, l, l, l)
}

func (m *myLocker) acquired(ctx context.Context, got myTry, firstAfterLoss bool) error {
	m.held = true
	m.ka.start(m, got.sent)
	upFor := time.Duration(-1)
	if !m.started.IsZero() {
		upFor = got.answ.Sub(m.started)
	}
	until, why := takeover(m.timing, got.answ, upFor, firstAfterLoss)
	if err := guard(ctx, m.opts, m.String(), m.ka, until, why); err != nil {
		m.Unlock(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// confirm is the keep-alive's check: the connection answers and still
// owns the lock.
func (m *myLocker) confirm(ctx context.Context) (bool, error) {
	var ours sql.NullInt64
	err := m.conn.QueryRowContext(ctx, "SELECT /*+ MAX_EXECUTION_TIME(60000) */ IS_USED_LOCK(?) = CONNECTION_ID()", m.name).Scan(&ours)
	return ours.Valid && ours.Int64 == 1, err
}

// idle waits between checks watching the socket: the driver reads
// nothing while idle, so anything readable (an error packet, the end of
// the connection) means the connection is ending, and is checked at once.
func (m *myLocker) idle(ctx context.Context, until time.Time, watch bool) error {
	if !watch || m.raw == nil {
		return waitUntil(ctx, until)
	}
	if _, err := waitReadable(ctx, m.raw, until); err != nil {
		return err
	}
	return nil
}

// gone: anything but an error the server answered with, or one of those
// it sends as it ends the connection (shutdown, killed, timed out).
func (m *myLocker) gone(err error) bool {
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) {
		return true
	}
	switch myErr.Number {
	case 1053, 1927, 4031:
		return true
	}
	return false
}

func (m *myLocker) Unlock(ctx context.Context) error {
	ctx, cancel := releaseContext(ctx)
	defer cancel()
	confirmed := m.ka.halt(ctx)
	if m.conn == nil {
		return nil
	}
	defer m.close()
	if !m.held {
		return nil
	}
	m.held = false
	if !confirmed {
		return fmt.Errorf("release %s: %s; closing the connection frees it", m.String(), unconfirmedWhy(m.ka))
	}
	if _, err := m.conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", m.name); err != nil {
		return fmt.Errorf("release %s: %s", m.String(), dbconn.LastLine(err))
	}
	return nil
}

func (m *myLocker) close() {
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
	if m.db != nil {
		m.db.Close()
		m.db = nil
	}
	m.raw = nil
}

// waitUntil waits until t or until ctx ends.
func waitUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	return nil
}
