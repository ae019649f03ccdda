package lock

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"github.com/migrun/migrun/dburl"
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

// quietDriver keeps go-sql-driver/mysql from printing to stderr on its
// own (e.g. "unexpected EOF" when a connection drops): migrun reports
// connection errors itself, through slog.
var quietDriver sync.Once

func newMySQL(u *dburl.URL, opts Options) *myLocker {
	quietDriver.Do(func() { _ = mysql.SetLogger(mysql.Logger(discardLogger{})) })
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
	return fmt.Sprintf("mysql named lock %q on %s", m.name, m.where())
}

func (m *myLocker) where() string {
	if s := m.u.Params["socket"]; s != "" {
		return s + "/" + m.u.Database
	}
	return m.u.Address("127.0.0.1") + "/" + m.u.Database
}

func (m *myLocker) config() (*mysql.Config, error) {
	cfg := mysql.NewConfig()
	cfg.User = m.u.User
	cfg.Passwd = m.u.Password
	cfg.DBName = m.u.Database
	if s := m.u.Params["socket"]; s != "" {
		cfg.Net, cfg.Addr = "unix", s
	} else {
		cfg.Net, cfg.Addr = "tcp", m.u.Address("127.0.0.1")
	}
	cfg.Timeout = maxAttemptTimeout
	switch mode := strings.ToLower(m.u.Params["ssl_mode"]); mode {
	case "", "disabled":
	case "preferred":
		cfg.TLS = &tls.Config{InsecureSkipVerify: true}
		cfg.AllowFallbackToPlaintext = true
	case "required":
		cfg.TLS = &tls.Config{InsecureSkipVerify: true}
	case "verify_ca", "verify_identity":
		tc := &tls.Config{ServerName: m.u.Host}
		if ca := m.u.Params["sslca"]; ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("%w: read sslca: %w", ErrUnsupported, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: sslca %s holds no PEM certificate", ErrUnsupported, ca)
			}
		}
		if cert, key := m.u.Params["sslcert"], m.u.Params["sslkey"]; cert != "" && key != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("%w: load sslcert/sslkey: %w", ErrUnsupported, err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		if mode == "verify_ca" {
			// Check the chain but not the host name.
			tc.InsecureSkipVerify = true
			tc.VerifyPeerCertificate = verifyChainOnly(tc.RootCAs)
		}
		cfg.TLS = tc
	default:
		return nil, fmt.Errorf("%w: unknown ssl_mode %q (want disabled, preferred, required, verify_ca or verify_identity)", ErrUnsupported, mode)
	}
	return cfg, nil
}

func verifyChainOnly(roots *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("server sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

func (m *myLocker) connect(ctx context.Context) error {
	cfg, err := m.config()
	if err != nil {
		return err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("%w: mysql connection settings: %s", ErrUnsupported, firstLine(err))
	}
	return connectRetrying(ctx, m.opts, m.where(), func(ctx context.Context) error {
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
			return classifyMySQL(err)
		}
		m.db, m.conn = db, conn
		return nil
	})
}

func classifyMySQL(err error) error {
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		clean := fmt.Errorf("%s (error %d)", myErr.Message, myErr.Number)
		switch myErr.Number {
		case 1044, 1045, 1049, 1698, 1227:
			return &permanentError{clean}
		}
		return clean
	}
	if errors.Is(err, mysql.ErrNoTLS) {
		return &permanentError{errors.New("TLS is required but the server does not offer it")}
	}
	return errors.New(lastLine(err))
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
			m.opts.Logger.Warn("lock connection lost while waiting; reconnecting", "lock", m.String(), "err", lastLine(err))
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
	qctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+maxAttemptTimeout)
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
		return errors.New(lastLine(err))
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
		return fmt.Errorf("release %s: %s", m.String(), lastLine(err))
	}
	return nil
}

type discardLogger struct{}

func (discardLogger) Print(...any) {}

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
