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
	"database/sql"
	"errors"
	"fmt"
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
	mariadbd *os.Process // while running
	exited   chan error  // mariadbd's exit
	mu       sync.Mutex
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
	name = fmt.Sprintf("t_%d_%d", os.Getpid(), dbCounter.Add(1))
	if s.kind == KindPostgreSQL {
		s.Exec(tb, "", fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, AppUser))
	} else {
		s.Exec(tb, "", "CREATE DATABASE "+name)
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

var shared struct {
	sync.Mutex
	servers map[string]*Server
	errs    map[string]error
}

// Main runs the package's tests, then stops the shared servers.
func Main(m *testing.M) {
	code := m.Run()
	shared.Lock()
	for _, s := range shared.servers {
		_ = s.Close()
	}
	shared.Unlock()
	os.Exit(code)
}

// Postgres is a PostgreSQL server shared by the test binary.
func Postgres(tb testing.TB) *Server { return sharedServer(tb, KindPostgreSQL) }

// MariaDB is a MariaDB server shared by the test binary.
func MariaDB(tb testing.TB) *Server { return sharedServer(tb, KindMariaDB) }

func sharedServer(tb testing.TB, kind string) *Server {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.servers == nil {
		shared.servers, shared.errs = map[string]*Server{}, map[string]error{}
	}
	if s := shared.servers[kind]; s != nil {
		return s
	}
	if err := shared.errs[kind]; err != nil {
		unavailable(tb, err)
	}
	s, err := external(kind)
	if s == nil && err == nil {
		s, err = start(context.Background(), kind)
	}
	if err != nil {
		shared.errs[kind] = err
		unavailable(tb, err)
	}
	shared.servers[kind] = s
	return s
}

// NewPostgres starts a private PostgreSQL server, stopped at the test's end.
func NewPostgres(tb testing.TB) *Server { return private(tb, KindPostgreSQL) }

// NewMariaDB starts a private MariaDB server, stopped at the test's end.
func NewMariaDB(tb testing.TB) *Server { return private(tb, KindMariaDB) }

func private(tb testing.TB, kind string) *Server {
	tb.Helper()
	s, err := start(context.Background(), kind)
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

// StartPostgres starts a throwaway PostgreSQL server; Close stops it.
func StartPostgres(ctx context.Context) (*Server, error) { return start(ctx, KindPostgreSQL) }

// StartMariaDB starts a throwaway MariaDB server; Close stops it.
func StartMariaDB(ctx context.Context) (*Server, error) { return start(ctx, KindMariaDB) }

func start(ctx context.Context, kind string) (*Server, error) {
	s := &Server{kind: kind, host: "127.0.0.1", password: randomPassword()}
	var err error
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	// Short: a unix socket path must fit in about 107 bytes.
	if s.dir, err = os.MkdirTemp("", "mt"); err != nil {
		return nil, err
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
			return nil, err
		}
	}
	if kind == KindPostgreSQL {
		err = s.initPostgres(ctx)
	} else {
		err = s.initMariaDB(ctx)
	}
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	if s.dir == "" {
		return nil
	}
	err := s.stop()
	os.RemoveAll(s.dir)
	return err
}

// Stop stops the server, keeping its data and port.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if s.dir == "" {
		tb.Fatal("cannot stop an external server")
	}
	if err := s.stop(); err != nil {
		tb.Fatalf("stop %s: %v", s.kind, err)
	}
}

// Start starts a stopped server again on the same port.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
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

func (s *Server) stop() error {
	if s.kind == KindPostgreSQL {
		return s.run(context.Background(), pgBin("pg_ctl"), "-D", s.dataDir(), "-m", "fast", "-w", "stop")
	}
	s.mu.Lock()
	proc, exited := s.mariadbd, s.exited
	s.mariadbd = nil
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(startTimeout):
		_ = proc.Kill()
		<-exited
	}
	return nil
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
	opts := fmt.Sprintf("-p %d -k %s -h 127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=300 -c shared_buffers=32MB", s.port, s.dir)
	return s.run(ctx, pgBin("pg_ctl"), "-D", s.dataDir(), "-l", filepath.Join(s.dir, "postgres.log"), "-o", opts, "-w", "-t", "60", "start")
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
	bin := "/usr/sbin/mariadbd"
	if _, err := os.Stat(bin); err != nil {
		bin = "mariadbd"
	}
	args := []string{"--no-defaults", "--datadir=" + s.dataDir(), "--socket=" + s.socket(),
		"--port=" + strconv.Itoa(s.port), "--bind-address=127.0.0.1", "--pid-file=" + filepath.Join(s.dir, "my.pid"),
		"--log-error=" + filepath.Join(s.dir, "mariadb.log"), "--innodb-flush-log-at-trx-commit=0",
		"--innodb-buffer-pool-size=32M", "--max-connections=400", "--skip-name-resolve"}
	if s.runAs != nil {
		args = append(args, "--user=mysql")
	}
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
			log, _ := os.ReadFile(filepath.Join(s.dir, "mariadb.log"))
			return fmt.Errorf("mariadbd exited: %v\n%s", err, tail(string(log), 2000))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return errors.New("mariadbd did not start in time")
		case <-tick.C:
		}
	}
	s.mu.Lock()
	s.mariadbd, s.exited = cmd.Process, exited
	s.mu.Unlock()
	return nil
}

// --- helpers -----------------------------------------------------------------

// external returns the server named by MIGRUN_TEST_POSTGRES_URL or
// MIGRUN_TEST_MYSQL_URL, if set.
func external(kind string) (*Server, error) {
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
	s := &Server{kind: kind, host: u.Hostname(), port: port, password: randomPassword()}
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The app user may exist from an earlier run: give it this run's password.
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

func randomPassword() string {
	const letters = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "pw" + string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
