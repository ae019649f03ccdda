// Package testdb starts throwaway PostgreSQL and MariaDB servers for tests
// and benchmarks: from the installed binaries, in a temp dir, on free
// loopback ports, so tests are hermetic and can stop and restart a server.
//
// As root, the servers run as the postgres and mysql users, since both
// refuse to run as root. MIGRUN_TEST_POSTGRES_URL and MIGRUN_TEST_MYSQL_URL
// (admin URLs of existing servers) replace the shared servers.
//
// A test binary that dies without cleaning up (go test's -timeout panic, a
// SIGKILL) leaves its servers running; the next start in the same temp dir
// stops and removes them.
package testdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	listen   []string   // addresses besides 127.0.0.1 (Options.Listen)
	shared   bool       // used by every test of the binary: no global changes
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

// mainRunning is set while Run runs the tests: only then are servers
// shared, since only Run stops them at the end.
var mainRunning atomic.Bool

// Main runs the package's tests, stops the shared servers and exits with
// the tests' status. Use Run when TestMain has more to clean up.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run runs the package's tests, then stops the shared servers, and returns
// the tests' exit status.
func Run(m *testing.M) int {
	mainRunning.Store(true)
	code := m.Run()
	mainRunning.Store(false)
	var wg sync.WaitGroup
	for _, sh := range shared {
		// Claim the once so that no late starter races the shutdown.
		sh.once.Do(func() {})
		if sh.server == nil {
			continue
		}
		wg.Go(func() {
			if err := sh.server.Close(); err != nil {
				slog.Warn("testdb: stop shared server", "kind", sh.server.kind, "err", err)
			}
		})
	}
	wg.Wait()
	return code
}

// Postgres is a PostgreSQL server shared by the test binary.
func Postgres(tb testing.TB) *Server {
	tb.Helper()
	return sharedFor(tb, KindPostgreSQL)
}

// MariaDB is a MariaDB server shared by the test binary.
func MariaDB(tb testing.TB) *Server {
	tb.Helper()
	return sharedFor(tb, KindMariaDB)
}

func sharedFor(tb testing.TB, kind string) *Server {
	tb.Helper()
	if !mainRunning.Load() {
		// Nobody would stop a shared server at the end (TestMain does not
		// call Main or Run): a private one, stopped with the test, instead.
		tb.Logf("testdb: TestMain does not call testdb.Main or testdb.Run; %s is private to this test", kind)
		return private(tb, kind)
	}
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
		} else {
			sh.server.shared = true
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
func NewPostgres(tb testing.TB) *Server {
	tb.Helper()
	return private(tb, KindPostgreSQL)
}

// NewMariaDB starts a private MariaDB server, stopped at the test's end.
func NewMariaDB(tb testing.TB) *Server {
	tb.Helper()
	return private(tb, KindMariaDB)
}

// NewServer starts a private server of kind (KindPostgreSQL or
// KindMariaDB) with opts, stopped at the test's end: for a test that
// restarts it, changes its global settings (SetGlobal) or needs it to
// listen on more addresses.
func NewServer(tb testing.TB, kind string, opts Options) *Server {
	tb.Helper()
	return privateWith(tb, kind, opts)
}

func private(tb testing.TB, kind string) *Server {
	tb.Helper()
	return privateWith(tb, kind, Options{})
}

func privateWith(tb testing.TB, kind string, opts Options) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	s, err := start(ctx, kind, opts)
	if err != nil {
		unavailable(tb, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Logf("stop %s server: %v", kind, err)
		}
	})
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

// --- throwaway servers ----------------------------------------------------

// Options adjust a throwaway server started outside a test.
type Options struct {
	// TempDir is where the server's directory is made; os.TempDir() if
	// empty. Sockets live there too, so keep the path short; as root it
	// must be traversable by the postgres and mysql users.
	TempDir string

	// Listen are addresses the server listens on besides 127.0.0.1: a
	// netfault node's host address, say, or "0.0.0.0" for every IPv4
	// address. Each must exist when the server starts. AppUser may then
	// connect from any address (with its password); the admin only over
	// loopback and the unix socket.
	Listen []string

	pickPort func() (int, error) // freePort unless a test says otherwise
	owner    int                 // pid recorded as the server's owner; os.Getpid() if 0
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
	if err := installed(kind); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	pickPort := opts.pickPort
	if pickPort == nil {
		pickPort = freePort
	}
	s := &Server{kind: kind, host: "127.0.0.1", password: randomPassword(), listen: opts.Listen}
	var err error
	if s.runAs, err = serverUser(kind); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if s.port, err = pickPort(); err != nil {
		return nil, fmt.Errorf("%s: pick a port: %w", kind, err)
	}
	if s.dir, err = newServerDir(ctx, opts, s.runAs); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if kind == KindPostgreSQL {
		err = s.initPostgres(ctx, pickPort)
	} else {
		err = s.initMariaDB(ctx, pickPort)
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return s, nil
}

// serverUser is who a server runs as: as root, the postgres or mysql user,
// since the servers (and PgBouncer) refuse to run as root; else nil, ourselves.
func serverUser(kind string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := "postgres"
	if kind == KindMariaDB {
		name = "mysql"
	}
	return credential(name)
}

// newServerDir makes a server's directory, named and marked so that a later
// process can remove it once its owner is gone, and owned by runAs.
func newServerDir(ctx context.Context, opts Options, runAs *syscall.Credential) (string, error) {
	owner := opts.owner
	if owner == 0 {
		owner = os.Getpid()
	}
	pattern := fmt.Sprintf("%s%d-", dirPrefix, owner)
	parent := opts.TempDir
	if parent == "" {
		parent = os.TempDir()
		if len(filepath.Join(parent, pattern))+10 > maxSocketDir {
			parent = "/tmp" // a long TMPDIR would not fit a socket path
		}
	}
	reapOrphansOnce(ctx, parent)
	dir, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return "", fmt.Errorf("make temp dir: %w", err)
	}
	if len(dir) > maxSocketDir {
		os.RemoveAll(dir)
		return "", fmt.Errorf("temp dir %s is too long for a unix socket path", dir)
	}
	if err := os.WriteFile(filepath.Join(dir, markerFile), []byte(markerText), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if runAs != nil {
		if err := os.Chown(dir, int(runAs.Uid), int(runAs.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// installed says which binary is missing, if one is.
func installed(kind string) error {
	names := []string{pgBin("initdb"), pgBin("pg_ctl"), pgBin("postgres")}
	if kind == KindMariaDB {
		names = []string{"mariadb-install-db", mariadbdBin()}
	}
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%s is not installed: %w", filepath.Base(name), err)
		}
	}
	return nil
}

// startNew starts a new server for the first time. Its port was free when
// picked, but nothing holds it until the server binds it, and another
// process (a concurrent test binary, an outgoing connection) may take it in
// between: then it picks another.
func (s *Server) startNew(ctx context.Context, pickPort func() (int, error)) error {
	for attempt := 1; ; attempt++ {
		err := s.startServer(ctx)
		if err == nil || attempt == 3 || !portTaken(s.port) {
			return err
		}
		slog.Info("testdb: port taken before the server bound it, picking another", "kind", s.kind, "port", s.port)
		if s.port, err = pickPort(); err != nil {
			return fmt.Errorf("pick a port: %w", err)
		}
	}
}

func (s *Server) startServer(ctx context.Context) error {
	if s.kind == KindPostgreSQL {
		return s.startPostgres(ctx)
	}
	return s.startMariaDB(ctx)
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	if s.dir == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.stop(ctx); err != nil {
		// Keep the files: without them nobody could tell the server to stop.
		return fmt.Errorf("stop %s in %s: %w", s.kind, s.dir, err)
	}
	return os.RemoveAll(s.dir)
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
	if err := s.startServer(ctx); err != nil {
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
	if s.kind == KindPostgreSQL {
		if err := s.stopPostgres(ctx); err != nil {
			return err
		}
		s.running = false
		return nil
	}
	proc, exited := s.mariadbd, s.exited
	s.running, s.mariadbd, s.exited = false, nil, nil
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

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
