// Package dbconn opens the database connections migrun needs (the lock's,
// the pending-migrations check's) from a Rails URL: driver settings,
// retrying within the connect timeout, and errors that say the real cause
// in one line, without the password.
package dbconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/backoff"
)

// Errors callers branch on.
var (
	// ErrUnavailable: the database could not be reached within the connect
	// timeout, or refused us (authentication, missing database, TLS).
	ErrUnavailable = errors.New("database unavailable")
	// ErrSettings: the URL's connection settings cannot be used.
	ErrSettings = errors.New("bad connection settings")
)

// Permanent marks a connection failure that retrying cannot fix:
// refused credentials, a missing database, a TLS mismatch.
type Permanent struct{ err error }

func (e *Permanent) Error() string { return e.err.Error() }
func (e *Permanent) Unwrap() error { return e.err }

// MaxAttemptTimeout bounds one connection attempt.
const MaxAttemptTimeout = 10 * time.Second

// Retry calls dial until it succeeds, fails permanently, or the
// connect timeout has passed since the first attempt. It returns errors
// wrapping ErrUnavailable, or ctx's error.
func Retry(ctx context.Context, timeout time.Duration, log *slog.Logger, what string, dial func(ctx context.Context) error) error {
	return RetryUntil(ctx, time.Now().Add(timeout), log, what, dial)
}

// RetryUntil is Retry with the time to give up at: a caller that was
// already waiting for the database (the lock, after a connection broke)
// spends what is left of its budget, not a new one.
//
// The first failure is logged with the budget and the setting that sets
// it; later ones only at attempts 2, 4, 8, ...: a wrong port is a few lines,
// not one per attempt.
func RetryUntil(ctx context.Context, deadline time.Time, log *slog.Logger, what string, dial func(ctx context.Context) error) error {
	start := time.Now()
	wait := backoff.New(250*time.Millisecond, 2*time.Second)
	for attempt := 1; ; attempt++ {
		attemptTimeout := min(time.Until(deadline), MaxAttemptTimeout)
		if attemptTimeout < 100*time.Millisecond {
			attemptTimeout = 100 * time.Millisecond
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := dial(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *Permanent
		if errors.As(err, &perm) {
			return fmt.Errorf("%w: connect to %s: %w", ErrUnavailable, what, perm.err)
		}
		if time.Until(deadline) <= 0 {
			return fmt.Errorf("%w: connect to %s: gave up after %s (%d attempts): %w", ErrUnavailable, what, time.Since(start).Round(100*time.Millisecond), attempt, err)
		}
		switch {
		case attempt == 1:
			log.Info("database not reachable yet; retrying (MIGRUN_CONNECT_TIMEOUT bounds it)", "database", what, "for", time.Until(deadline), "err", err)
		case attempt&(attempt-1) == 0:
			log.Info("database still not reachable; retrying", "database", what, "attempts", attempt, "waited", time.Since(start), "left", time.Until(deadline), "err", err)
		}
		t := time.NewTimer(min(wait.Next(), time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pgParams are the URL parameters that mean something to libpq and pgx;
// Rails' own (pool, encoding, reconnect, ...) would make the server refuse
// the connection.
var pgParams = []string{"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslsni",
	"application_name", "target_session_attrs", "options"}

// PostgresConfig builds pgx's configuration from the URL's fields; the password is
// set afterwards, so it is in no string pgx could echo.
func PostgresConfig(u *dburl.URL) (*pgx.ConnConfig, error) {
	kv := map[string]string{"dbname": u.Database, "application_name": "migrun"}
	if u.User != "" {
		kv["user"] = u.User
	}
	if u.Host != "" {
		kv["host"] = u.Host
	} else if h := u.Params["host"]; h != "" {
		kv["host"] = h
	}
	if u.Port != 0 {
		kv["port"] = strconv.Itoa(u.Port)
	} else if port := u.Params["port"]; port != "" {
		kv["port"] = port
	}
	for _, k := range pgParams {
		if v, ok := u.Params[k]; ok {
			kv[k] = v
		}
	}
	var b strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&b, "%s='%s' ", k, strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
	}
	cfg, err := pgx.ParseConfig(b.String())
	if err != nil {
		return nil, fmt.Errorf("%w: postgresql connection settings: %s", ErrSettings, firstLine(err))
	}
	cfg.Password = u.Password
	if pw := u.Params["password"]; pw != "" && cfg.Password == "" {
		cfg.Password = pw
	}
	// The simple protocol prepares nothing, so it works through PgBouncer.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.ConnectTimeout = 0 // bounded by the context of each attempt
	return cfg, nil
}

// maxAppName is the most of application_name PostgreSQL keeps (NAMEDATALEN − 1).
const maxAppName = 63

// PostgresIdentity names the connection in pg_stat_activity
// (application_name), cut to the bytes the server keeps.
func PostgresIdentity(cfg *pgx.ConnConfig, name string) {
	name = strings.ToValidUTF8(name, "?")
	if len(name) > maxAppName {
		name = name[:maxAppName]
		for !utf8.ValidString(name) { // a character cut in two
			name = name[:len(name)-1]
		}
	}
	cfg.RuntimeParams["application_name"] = name
}

// MySQLIdentity names the connection in its connection attributes
// (program_name; the driver's own _client_name stays). The driver splits
// the attribute list at ',' and ':', so those become '_'.
func MySQLIdentity(cfg *mysql.Config, name string) {
	attr := "program_name:" + strings.NewReplacer(",", "_", ":", "_").Replace(name)
	if cfg.ConnectionAttributes != "" {
		attr = cfg.ConnectionAttributes + "," + attr
	}
	cfg.ConnectionAttributes = attr
}

// PostgresAddr names the server and database for logs, without secrets.
func PostgresAddr(u *dburl.URL) string {
	host := u.Host
	if host == "" {
		host = u.Params["host"]
	}
	if host == "" {
		host = "localhost"
	}
	port := u.Port
	if port == 0 {
		port = 5432
	}
	return net.JoinHostPort(host, strconv.Itoa(port)) + "/" + u.Database
}

// ClassifyPostgres makes a connect error one line with its real cause, and marks
// the ones retrying cannot fix.
func ClassifyPostgres(err error, cfg *pgx.ConnConfig) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		clean := fmt.Errorf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
		switch pgErr.Code {
		case "28P01", "28000", "3D000", "42501":
			return &Permanent{clean}
		}
		return clean
	}
	// With sslmode=prefer pgx tries TLS first; its error lists each try,
	// and the last line is the real cause.
	msg := LastLine(err)
	if strings.Contains(msg, "server refused TLS connection") && cfg.TLSConfig != nil && len(cfg.Fallbacks) == 0 {
		return &Permanent{errors.New("TLS is required but the server does not offer it")}
	}
	return errors.New(msg)
}

// MySQLConfig builds go-sql-driver's configuration from the URL's fields,
// with TLS as Rails' mysql2 ssl_mode asks.
func MySQLConfig(u *dburl.URL) (*mysql.Config, error) {
	cfg := mysql.NewConfig()
	cfg.User = u.User
	cfg.Passwd = u.Password
	cfg.DBName = u.Database
	if s := u.Params["socket"]; s != "" {
		cfg.Net, cfg.Addr = "unix", s
	} else {
		cfg.Net, cfg.Addr = "tcp", u.Address("127.0.0.1")
	}
	cfg.Timeout = MaxAttemptTimeout
	switch mode := strings.ToLower(u.Params["ssl_mode"]); mode {
	case "", "disabled":
	case "preferred":
		cfg.TLS = &tls.Config{InsecureSkipVerify: true}
		cfg.AllowFallbackToPlaintext = true
	case "required":
		cfg.TLS = &tls.Config{InsecureSkipVerify: true}
	case "verify_ca", "verify_identity":
		tc := &tls.Config{ServerName: u.Host}
		if ca := u.Params["sslca"]; ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("%w: read sslca: %w", ErrSettings, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: sslca %s holds no PEM certificate", ErrSettings, ca)
			}
		}
		if cert, key := u.Params["sslcert"], u.Params["sslkey"]; cert != "" && key != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("%w: load sslcert/sslkey: %w", ErrSettings, err)
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
		return nil, fmt.Errorf("%w: unknown ssl_mode %q (want disabled, preferred, required, verify_ca or verify_identity)", ErrSettings, mode)
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

// MySQLAddr names the server and database for logs, without secrets.
func MySQLAddr(u *dburl.URL) string {
	if s := u.Params["socket"]; s != "" {
		return s + "/" + u.Database
	}
	return u.Address("127.0.0.1") + "/" + u.Database
}

// ClassifyMySQL makes a connect error one line and marks the ones
// retrying cannot fix.
func ClassifyMySQL(err error) error {
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		clean := fmt.Errorf("%s (error %d)", myErr.Message, myErr.Number)
		switch myErr.Number {
		case 1044, 1045, 1049, 1698, 1227:
			return &Permanent{clean}
		}
		return clean
	}
	if errors.Is(err, mysql.ErrNoTLS) {
		return &Permanent{errors.New("TLS is required but the server does not offer it")}
	}
	return errors.New(LastLine(err))
}

// init keeps go-sql-driver/mysql from printing to stderr on its own (e.g.
// "unexpected EOF" when a connection drops): migrun reports connection
// errors itself, through slog. At package initialisation, before any
// goroutine: SetLogger writes the driver's global that every new
// connection configuration reads.
func init() {
	_ = mysql.SetLogger(mysql.Logger(discardLogger{}))
}

type discardLogger struct{}

func (discardLogger) Print(...any) {}

// LastLine is an error's last line: the real cause in pgx's multi-line
// connect errors.
func LastLine(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
