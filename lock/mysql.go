package lock

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
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
	*keepAlive
	u    *dburl.URL
	opts Options
	name string
	db   *sql.DB
	conn *sql.Conn
	held bool
}

func newMySQL(u *dburl.URL, opts Options) *myLocker {
	dbconn.QuietMySQLDriver()
	return &myLocker{keepAlive: newKeepAlive(), u: u, opts: opts, name: mysqlLockName(opts.Name)}
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

func (m *myLocker) connect(ctx context.Context) error {
	cfg, err := dbconn.MySQLConfig(m.u)
	if err != nil {
		return err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("%w: mysql connection settings: %s", ErrUnsupported, dbconn.LastLine(err))
	}
	return m.opts.retry(ctx, dbconn.MySQLAddr(m.u), func(ctx context.Context) error {
		db := sql.OpenDB(connector)
		db.SetMaxOpenConns(1)
		conn, err := db.Conn(ctx)
		if err == nil {
			err = conn.PingContext(ctx)
		}
		if err != nil {
			if conn != nil {
				conn.Close()
			}
			db.Close()
			return dbconn.ClassifyMySQL(err)
		}
		m.db, m.conn = db, conn
		return nil
	})
}

func (m *myLocker) Lock(ctx context.Context) error {
	announced := false
	for {
		if m.conn == nil {
			if err := m.connect(ctx); err != nil {
				return err
			}
		}
		got, err := m.getLock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				m.close()
				return ctxErr(ctx)
			}
			var myErr *mysql.MySQLError
			if errors.As(err, &myErr) {
				return fmt.Errorf("acquire %s: %s (error %d)", m.String(), myErr.Message, myErr.Number)
			}
			m.opts.Logger.Warn("lock connection lost while waiting; reconnecting", "lock", m.String(), "err", dbconn.LastLine(err))
			m.close()
			continue
		}
		if got {
			m.held = true
			m.start(m.opts.KeepAlive, m.opts.Logger, m.String(), m.check)
			return nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
			m.close()
			return ErrTimeout
		}
		if !announced {
			m.opts.Logger.Info("lock is held by another runner; waiting", "lock", m.String())
			announced = true
		}
	}
}

// getLock waits for the lock at most one chunk, in whole seconds (MySQL's
// GET_LOCK takes no fractions) and never past ctx's deadline by more than
// the rounding.
func (m *myLocker) getLock(ctx context.Context) (bool, error) {
	wait := getLockChunk
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	qctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+dbconn.MaxAttemptTimeout)
	defer cancel()
	var got sql.NullInt64
	if err := m.conn.QueryRowContext(qctx, "SELECT GET_LOCK(?, ?)", m.name, secs).Scan(&got); err != nil {
		return false, err
	}
	if !got.Valid {
		return false, fmt.Errorf("GET_LOCK(%q) returned NULL", m.name)
	}
	return got.Int64 == 1, nil
}

// check is the keep-alive: the connection answers and still owns the lock.
func (m *myLocker) check(ctx context.Context) error {
	var ours sql.NullInt64
	if err := m.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", m.name).Scan(&ours); err != nil {
		return errors.New(dbconn.LastLine(err))
	}
	if !ours.Valid || ours.Int64 != 1 {
		return errors.New("the lock is no longer held by migrun's connection")
	}
	return nil
}

func (m *myLocker) Unlock(ctx context.Context) error {
	m.halt()
	if m.conn == nil {
		return nil
	}
	defer m.close()
	if !m.held {
		return nil
	}
	m.held = false
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
}
