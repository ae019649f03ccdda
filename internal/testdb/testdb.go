// Package testdb starts throwaway PostgreSQL and MariaDB servers for tests
// and benchmarks: from the installed binaries, in a temp dir, on free
// loopback ports, so tests are hermetic and can stop and restart a server.
//
// As root, the servers run as the postgres and mysql users, since both
// refuse to run as root. MIGRUN_TEST_POSTGRES_URL and MIGRUN_TEST_MYSQL_URL
// (admin URLs of existing servers) replace the shared servers.
package testdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// Kinds of server.
const (
	KindPostgreSQL = "postgresql"
	KindMariaDB    = "mariadb"
)

// AppUser is the role tests connect as, with a password.
const AppUser = "migrun"

const startTimeout = 60 * time.Second

// Server is one database server.
type Server struct {
	kind     string
	host     string
	port     int
	password string // AppUser's
	admin    string // admin connection string (pgx) or DSN (mysql)
	dir      string // data and sockets; empty for an external server
	runAs    *syscall.Credential
	mu       sync.Mutex // guards the fields below
	running  bool
	mariadbd *os.Process // while running
	exited   chan error  // mariadbd's exit
}

// Kind is KindPostgreSQL or KindMariaDB.
func (s *Server) Kind() string { return s.kind }

// Host is the server's address.
func (s *Server) Host() string { return s.host }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Password is AppUser's password; tests assert it never leaks.
func (s *Server) Password() string { return s.password }

// URL is a Rails URL for db as AppUser, with the password.
func (s *Server) URL(db string) string {
	scheme := "postgres"
	if s.kind == KindMariaDB {
		scheme = "mysql2"
	}
	return fmt.Sprintf("%s://%s:%s@%s/%s", scheme, AppUser, url.PathEscape(s.password), net.JoinHostPort(s.host, strconv.Itoa(s.port)), db)
}

var dbCounter atomic.Int64

// CreateDatabase makes a fresh database that AppUser may use.
func (s *Server) CreateDatabase(tb testing.TB) (name, url string) {
	tb.Helper()
	// Unique across concurrent test binaries and earlier runs that share an
	// external server, where a pid alone may be reused.
	name = fmt.Sprintf("t_%d_%d_%s", os.Getpid(), dbCounter.Add(1), strings.ToLower(randomString(6)))
	if s.kind == KindPostgreSQL {
		s.Exec(tb, "", fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, AppUser))
	} else {
		s.Exec(tb, "", "CREATE DATABASE "+name)
	}
	if s.dir == "" {
		// A throwaway server is deleted whole; an external one keeps what we leave.
		tb.Cleanup(func() { s.dropDatabase(tb, name) })
	}
	return name, s.URL(name)
}

// Exec runs statements as the admin, in db ("" for the default).
func (s *Server) Exec(tb testing.TB, db, query string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.exec(ctx, db, query); err != nil {
		tb.Fatalf("%s: %s: %v", s.kind, query, err)
	}
}

// QueryInt runs a query returning one integer, as the admin.
func (s *Server) QueryInt(tb testing.TB, db, query string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int64
	var err error
	if s.kind == KindPostgreSQL {
		var conn *pgx.Conn
		if conn, err = s.pgAdmin(ctx, db); err == nil {
			defer conn.Close(ctx)
			err = conn.QueryRow(ctx, query).Scan(&n)
		}
	} else {
		var dbh *sql.DB
		if dbh, err = s.myAdmin(db); err == nil {
			defer dbh.Close()
			err = dbh.QueryRowContext(ctx, query).Scan(&n)
		}
	}
	if err != nil {
		tb.Fatalf("%s: %s: %v", s.kind, query, err)
	}
	return n
}

func (s *Server) dropDatabase(tb testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	query := "DROP DATABASE IF EXISTS " + name
	if s.kind == KindPostgreSQL {
		query += " WITH (FORCE)"
	}
	if err := s.exec(ctx, "", query); err != nil {
		tb.Logf("drop test database %s: %v", name, err)
	}
}

func (s *Server) exec(ctx context.Context, db, query string) error {
	if s.kind == KindPostgreSQL {
		conn, err := s.pgAdmin(ctx, db)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, query)
		return err
	}
	dbh, err := s.myAdmin(db)
	if err != nil {
		return err
	}
	defer dbh.Close()
	_, err = dbh.ExecContext(ctx, query)
	return err
}

func (s *Server) pgAdmin(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.admin)
	if err != nil {
		return nil, err
	}
	if db != "" {
		cfg.Database = db
	}
	return pgx.ConnectConfig(ctx, cfg)
}

func (s *Server) myAdmin(db string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(s.admin)
	if err != nil {
		return nil, err
	}
	if db != "" {
		cfg.DBName = db
	}
	cfg.MultiStatements = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// --- shared servers -------------------------------------------------------

// sharedServer is started at most once per test binary; a failure is
// remembered so that later tests skip or fail at once instead of waiting again.
type sharedServer struct {
	once   sync.Once
	server *Server
	err    error
}

var shared = map[string]*sharedServer{KindPostgreSQL: {}, KindMariaDB: {}}

// Main runs the package's tests, then stops the shared servers.
func Main(m *testing.M) {
	code := m.Run()
	for _, sh := range shared {
		// Claim the once so that no late starter races the shutdown.
		sh.once.Do(func() {})
		if sh.server != nil {
			if err := sh.server.Close(); err != nil {
				slog.Warn("testdb: stop shared server", "kind", sh.server.kind, "err", err)
			}
		}
	}
	os.Exit(code)
}

// Postgres is a PostgreSQL server shared by the test binary.
func Postgres(tb testing.TB) *Server { return sharedFor(tb, KindPostgreSQL) }

// MariaDB is a MariaDB server shared by the test binary.
func MariaDB(tb testing.TB) *Server { return sharedFor(tb, KindMariaDB) }

func sharedFor(tb testing.TB, kind string) *Server {
	tb.Helper()
	sh := shared[kind]
	sh.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
		defer cancel()
		sh.server, sh.err = external(ctx, kind)
		if sh.server == nil && sh.err == nil {
			sh.server, sh.err = start(ctx, kind, Options{})
		}
		if sh.err != nil {
			sh.server = nil
		}
	})
	if sh.server == nil {
		err := sh.err
		if err == nil {
			err = errors.New("test binary is shutting down")
		}
		unavailable(tb, err)
	}
	return sh.server
}

// NewPostgres starts a private PostgreSQL server, stopped at the test's end.
func NewPostgres(tb testing.TB) *Server { return private(tb, KindPostgreSQL) }

// NewMariaDB starts a private MariaDB server, stopped at the test's end.
func NewMariaDB(tb testing.TB) *Server { return private(tb, KindMariaDB) }

func private(tb testing.TB, kind string) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	s, err := start(ctx, kind, Options{})
	if err != nil {
		unavailable(tb, err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// unavailable fails under CI (a missing server is a broken CI), skips elsewhere.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("database server unavailable: %v", err)
	}
	tb.Skipf("database server unavailable: %v", err)
}

// Options adjust a throwaway server started outside a test.
type Options struct {
	// TempDir is where the server's directory is made; os.TempDir() if
	// empty. Sockets live there too, so keep the path short; as root it
	// must be traversable by the postgres and mysql users.
	TempDir string
}

// StartPostgres starts a throwaway PostgreSQL server; Close stops it and
// removes its files.
func StartPostgres(ctx context.Context, opts Options) (*Server, error) {
	return start(ctx, KindPostgreSQL, opts)
}

// StartMariaDB starts a throwaway MariaDB server; Close stops it and
// removes its files.
func StartMariaDB(ctx context.Context, opts Options) (*Server, error) {
	return start(ctx, KindMariaDB, opts)
}

// maxSocketDir leaves room for the socket's name (".s.PGSQL.65535") in the
// kernel's 108-byte limit on unix socket paths.
const maxSocketDir = 80

func start(ctx context.Context, kind string, opts Options) (*Server, error) {
	s := &Server{kind: kind, host: "127.0.0.1", password: randomPassword()}
	var err error
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	parent := opts.TempDir
	if parent == "" {
		parent = os.TempDir()
	}
	if len(parent) > maxSocketDir-12 && opts.TempDir == "" {
		parent = "/tmp" // a long TMPDIR would not fit a socket path
	}
	if s.dir, err = os.MkdirTemp(parent, "mt"); err != nil {
		return nil, fmt.Errorf("%s: make temp dir: %w", kind, err)
	}
	if len(s.dir) > maxSocketDir {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("%s: temp dir %s is too long for a unix socket path", kind, s.dir)
	}
	if os.Geteuid() == 0 {
		name := "postgres"
		if kind == KindMariaDB {
			name = "mysql"
		}
		if s.runAs, err = credential(name); err != nil {
			os.RemoveAll(s.dir)
			return nil, err
		}
		if err := os.Chown(s.dir, int(s.runAs.Uid), int(s.runAs.Gid)); err != nil {
			os.RemoveAll(s.dir)
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
	}
	if kind == KindPostgreSQL {
		err = s.initPostgres(ctx)
	} else {
		err = s.initMariaDB(ctx)
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return s, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	if s.dir == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err := s.stop(ctx)
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	return err
}

// Stop stops the server, keeping its data and port.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if s.dir == "" {
		tb.Fatal("cannot stop an external server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.stop(ctx); err != nil {
		tb.Fatalf("stop %s: %v", s.kind, err)
	}
}

// Start starts a stopped server again on the same port.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	if s.dir == "" {
		tb.Fatal("cannot start an external server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var err error
	if s.kind == KindPostgreSQL {
		err = s.startPostgres(ctx)
	} else {
		err = s.startMariaDB(ctx)
	}
	if err != nil {
		tb.Fatalf("start %s: %v", s.kind, err)
	}
}

// stop stops a running server and waits for it to exit; stopping a
// stopped server does nothing.
func (s *Server) stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	s.running = false
	if s.kind == KindPostgreSQL {
		return s.run(ctx, pgBin("pg_ctl"), "-D", s.dataDir(), "-m", "fast", "-w", "stop")
	}
	proc, exited := s.mariadbd, s.exited
	s.mariadbd, s.exited = nil, nil
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		_ = proc.Kill()
		<-exited
		return fmt.Errorf("mariadbd did not stop on SIGTERM, killed: %w", ctx.Err())
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// run runs a server tool as the server's user, with its output in the error.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir
	if s.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.runAs}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", filepath.Base(name), err, tail(string(out), 2000))
	}
	return nil
}

// --- PostgreSQL ---

func (s *Server) initPostgres(ctx context.Context) error {
	pwfile := filepath.Join(s.dir, "pw")
	if err := os.WriteFile(pwfile, []byte("unused-superuser-password\n"), 0o600); err != nil {
		return err
	}
	if s.runAs != nil {
		_ = os.Chown(pwfile, int(s.runAs.Uid), int(s.runAs.Gid))
	}
	if err := s.run(ctx, pgBin("initdb"), "-D", s.dataDir(), "-U", "postgres", "--no-sync",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile, "-E", "UTF8", "--locale=C"); err != nil {
		return err
	}
	if err := s.startPostgres(ctx); err != nil {
		return err
	}
	s.admin = fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.dir, s.port)
	setup := fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'; CREATE DATABASE %s OWNER %s", AppUser, s.password, AppUser, AppUser)
	for _, q := range strings.Split(setup, "; ") {
		if err := s.exec(ctx, "", q); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) startPostgres(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	logFile := filepath.Join(s.dir, "postgres.log")
	opts := fmt.Sprintf("-p %d -k %s -h 127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=300 -c shared_buffers=32MB", s.port, s.dir)
	err := s.run(ctx, pgBin("pg_ctl"), "-D", s.dataDir(), "-l", logFile, "-o", opts, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "start")
	if err != nil {
		// pg_ctl only says "see the log"; the reason is in the log.
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("%w\npostgres.log:\n%s", err, tail(string(log), 2000))
	}
	s.running = true
	return nil
}

// pgBin finds a PostgreSQL tool: the newest installed version, else PATH.
func pgBin(name string) string {
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(versions, func(i, j int) bool { return versionOf(versions[i]) > versionOf(versions[j]) })
	if len(versions) > 0 {
		return versions[0]
	}
	return name
}

func versionOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// --- MariaDB ---

func (s *Server) initMariaDB(ctx context.Context) error {
	args := []string{"--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db",
		"--datadir=" + s.dataDir()}
	if s.runAs != nil {
		args = append(args, "--user=mysql")
	}
	if err := s.run(ctx, "mariadb-install-db", args...); err != nil {
		return err
	}
	if err := s.startMariaDB(ctx); err != nil {
		return err
	}
	s.admin = (&mysql.Config{User: "root", Net: "unix", Addr: s.socket(), AllowNativePasswords: true}).FormatDSN()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", AppUser, s.password),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%'", AppUser),
		"CREATE DATABASE " + AppUser,
	} {
		if err := s.exec(ctx, "", q); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) socket() string { return filepath.Join(s.dir, "my.sock") }

func (s *Server) startMariaDB(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	bin := "/usr/sbin/mariadbd"
	if _, err := os.Stat(bin); err != nil {
		bin = "mariadbd"
	}
	args := []string{"--no-defaults", "--datadir=" + s.dataDir(), "--socket=" + s.socket(),
		"--port=" + strconv.Itoa(s.port), "--bind-address=127.0.0.1", "--skip-networking=0", "--pid-file=" + filepath.Join(s.dir, "my.pid"),
		"--log-error=" + filepath.Join(s.dir, "mariadb.log"), "--innodb-flush-log-at-trx-commit=0",
		"--innodb-buffer-pool-size=32M", "--max-connections=400", "--skip-name-resolve"}
	if s.runAs != nil {
		args = append(args, "--user=mysql")
	}
	logFile := filepath.Join(s.dir, "mariadb.log")
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.Dial("unix", s.socket()); err == nil {
			conn.Close()
			// Wait for it to answer as well as accept.
			if s.admin == "" || s.exec(ctx, "", "SELECT 1") == nil {
				break
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("mariadbd exited: %v\nmariadb.log:\n%s", err, tail(string(log), 2000))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("mariadbd did not accept connections: %w\nmariadb.log:\n%s", ctx.Err(), tail(string(log), 2000))
		case <-tick.C:
		}
	}
	s.running, s.mariadbd, s.exited = true, cmd.Process, exited
	return nil
}

// --- helpers -----------------------------------------------------------------

// external returns the server named by MIGRUN_TEST_POSTGRES_URL or
// MIGRUN_TEST_MYSQL_URL, if set.
func external(ctx context.Context, kind string) (*Server, error) {
	env := "MIGRUN_TEST_POSTGRES_URL"
	if kind == KindMariaDB {
		env = "MIGRUN_TEST_MYSQL_URL"
	}
	raw := os.Getenv(env)
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s is not a URL", env)
	}
	port, _ := strconv.Atoi(u.Port())
	// Test binaries of several packages run at once against the same server;
	// a password derived from the admin URL is the same in all of them, where
	// a random one would lock out every binary but the last to set it.
	s := &Server{kind: kind, host: u.Hostname(), port: port, password: derivedPassword(raw)}
	if kind == KindPostgreSQL {
		if s.port == 0 {
			s.port = 5432
		}
		s.admin = raw
	} else {
		if s.port == 0 {
			s.port = 3306
		}
		pw, _ := u.User.Password()
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = u.User.Username(), pw, "tcp", net.JoinHostPort(s.host, strconv.Itoa(s.port))
		s.admin = cfg.FormatDSN()
	}
	// The app user may exist from an earlier run: make sure of its password.
	var stmts []string
	if kind == KindPostgreSQL {
		stmts = []string{
			fmt.Sprintf("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN CREATEDB; END IF; END$$", AppUser),
			fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", AppUser, s.password),
		}
	} else {
		stmts = []string{
			fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%'", AppUser),
			fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s'", AppUser, s.password),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%'", AppUser),
		}
	}
	for _, q := range stmts {
		if err := s.exec(ctx, "", q); err != nil {
			return nil, fmt.Errorf("%s: prepare the app user: %w", env, err)
		}
	}
	return s, nil
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Passwords are letters and digits only, so they need no quoting in SQL or
// escaping in URLs.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func randomPassword() string { return "pw" + randomString(20) }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return alphabet(b)
}

func derivedPassword(adminURL string) string {
	sum := sha256.Sum256([]byte("migrun testdb app user\x00" + adminURL))
	return "pw" + alphabet(sum[:20])
}

func alphabet(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = passwordAlphabet[int(c)%len(passwordAlphabet)]
	}
	return string(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
