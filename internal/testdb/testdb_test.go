package testdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// connect connects to url as the app user with the given password and runs SELECT 1.
func connect(t *testing.T, s *Server, db, password string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.Kind() == KindPostgreSQL {
		cfg, err := pgx.ParseConfig("sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = s.Host(), uint16(s.Port()), AppUser, password, db
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "SELECT 1")
		return err
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = AppUser, password, "tcp", net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())), db
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dbh := sql.OpenDB(c)
	defer dbh.Close()
	return dbh.PingContext(ctx)
}

func TestShared(t *testing.T) {
	for name, server := range map[string]func(testing.TB) *Server{"postgresql": Postgres, "mariadb": MariaDB} {
		t.Run(name, func(t *testing.T) {
			s := server(t)
			if again := server(t); again != s {
				t.Error("a second call started another server")
			}
			db, url := s.CreateDatabase(t)
			if !strings.Contains(url, s.Password()) || !strings.HasSuffix(url, "/"+db) {
				t.Errorf("URL %q", url)
			}
			if err := connect(t, s, db, s.Password()); err != nil {
				t.Fatalf("app user cannot connect: %v", err)
			}
			if err := connect(t, s, db, "wrong-password"); err == nil {
				t.Fatal("a wrong password was accepted")
			}
			if n := s.QueryInt(t, db, "SELECT 41 + 1"); n != 42 {
				t.Errorf("QueryInt = %d", n)
			}
		})
	}
}

// TestSharedNeedsMain: without Main or Run in TestMain nobody would stop
// a shared server when the binary ends, so Postgres gives a private server
// that stops with the test instead of leaving one running.
func TestSharedNeedsMain(t *testing.T) {
	mainRunning.Store(false)
	defer mainRunning.Store(true)
	var s *Server
	t.Run("without Main", func(t *testing.T) {
		s = Postgres(t)
		if s == shared[KindPostgreSQL].server {
			t.Error("got the shared server")
		}
	})
	if s == nil {
		t.Fatal("no server")
	}
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running || portTaken(s.port) {
		t.Errorf("the server outlived its test (running %v, port %d taken %v)", running, s.port, portTaken(s.port))
	}
}

func TestStopStart(t *testing.T) {
	for name, newServer := range map[string]func(testing.TB) *Server{"postgresql": NewPostgres, "mariadb": NewMariaDB} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			db, _ := s.CreateDatabase(t)
			s.Stop(t)
			if err := connect(t, s, db, s.Password()); err == nil {
				t.Fatal("connected to a stopped server")
			}
			s.Start(t)
			if err := connect(t, s, db, s.Password()); err != nil {
				t.Fatalf("after restart: %v", err)
			}
			s.Stop(t)
			s.Stop(t) // stopping a stopped server is harmless
			if err := s.Close(); err != nil {
				t.Errorf("Close after Stop: %v", err)
			}
		})
	}
}

// TestExternal points the override variables at a throwaway server, as CI
// with service containers would, and checks two test binaries can share it.
func TestExternal(t *testing.T) {
	tests := []struct {
		name     string
		env      string
		newAdmin func(t *testing.T) (*Server, string)
	}{
		{"postgresql", "MIGRUN_TEST_POSTGRES_URL", func(t *testing.T) (*Server, string) {
			s := NewPostgres(t)
			// initdb set this superuser password; TCP needs one.
			return s, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", superuserPassword, s.Port())
		}},
		{"mariadb", "MIGRUN_TEST_MYSQL_URL", func(t *testing.T) (*Server, string) {
			s := NewMariaDB(t)
			s.Exec(t, "", "CREATE USER 'admin'@'%' IDENTIFIED BY 'adminpw'; GRANT ALL ON *.* TO 'admin'@'%' WITH GRANT OPTION")
			return s, fmt.Sprintf("mysql2://admin:adminpw@127.0.0.1:%d/", s.Port())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owner, adminURL := tt.newAdmin(t)
			t.Setenv(tt.env, adminURL)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			first, err := external(ctx, owner.Kind())
			if err != nil {
				t.Fatalf("external: %v", err)
			}
			if first.Port() != owner.Port() || first.Kind() != owner.Kind() {
				t.Fatalf("external server %s:%d, want %s:%d", first.Kind(), first.Port(), owner.Kind(), owner.Port())
			}
			db, _ := first.CreateDatabase(t)
			// A second test binary prepares the same server while the first runs.
			second, err := external(ctx, owner.Kind())
			if err != nil {
				t.Fatalf("external again: %v", err)
			}
			if err := connect(t, first, db, first.Password()); err != nil {
				t.Fatalf("app user of the first binary locked out by the second: %v", err)
			}
			if second.Password() != first.Password() {
				t.Error("the two binaries disagree on the app user's password")
			}
			if strings.Contains(first.Password(), "adminpw") || strings.Contains(first.Password(), superuserPassword) {
				t.Error("app password reveals the admin password")
			}
		})
	}
}

func TestPasswords(t *testing.T) {
	tests := []struct {
		name string
		pw   string
	}{
		{"random", randomPassword()},
		{"derived", derivedPassword("postgres://postgres:secret@db:5432/postgres")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.pw) < 16 {
				t.Errorf("password %d characters, want at least 16", len(tt.pw))
			}
			for _, c := range tt.pw {
				if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
					t.Fatalf("password has %q, want only letters and digits", c)
				}
			}
		})
	}
	if first, second := randomPassword(), randomPassword(); first == second {
		t.Error("two random passwords are equal")
	}
	if derivedPassword("a") == derivedPassword("b") {
		t.Error("different servers derive the same password")
	}
}

// startFor starts a throwaway server with opts, failing the test when the
// binaries are installed but the server does not work.
func startFor(t *testing.T, kind string, opts Options) *Server {
	t.Helper()
	if err := installed(kind); err != nil {
		unavailable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	s, err := start(ctx, kind, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPortTakenBeforeStart(t *testing.T) {
	for _, kind := range []string{KindPostgreSQL, KindMariaDB} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// Something takes the picked port before the server binds it.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			taken := l.Addr().(*net.TCPAddr).Port
			picks := 0
			s := startFor(t, kind, Options{pickPort: func() (int, error) {
				picks++
				if picks == 1 {
					return taken, nil
				}
				return freePort()
			}})
			if s.Port() == taken {
				t.Fatalf("server claims port %d, which another listener holds", taken)
			}
			if picks != 2 {
				t.Errorf("picked %d ports, want 2", picks)
			}
			db, _ := s.CreateDatabase(t)
			if err := connect(t, s, db, s.Password()); err != nil {
				t.Fatalf("app user cannot connect: %v", err)
			}
		})
	}
}

// deadPid is the pid of a process that has exited and been waited for.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.Pid()
}

// TestReapOrphans plays a test binary that died without stopping its server.
func TestReapOrphans(t *testing.T) {
	for _, kind := range []string{KindPostgreSQL, KindMariaDB} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			parent, err := os.MkdirTemp("", "reap")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(parent) })
			// As root the server's own user must reach its directory.
			if err := os.Chmod(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			dead := deadPid(t)
			orphan := startFor(t, kind, Options{TempDir: parent, owner: dead})
			pidFile := filepath.Join(orphan.dir, "my.pid")
			if kind == KindPostgreSQL {
				pidFile = filepath.Join(orphan.dataDir(), "postmaster.pid")
			}
			pid, ok := serverPid(pidFile, orphan.dir)
			if !ok {
				t.Fatalf("no running server in %s", pidFile)
			}
			keep := map[string]string{
				"live owner":   fmt.Sprintf("%s%d-live", dirPrefix, os.Getpid()),
				"no marker":    fmt.Sprintf("%s%d-nomarker", dirPrefix, dead),
				"wrong marker": fmt.Sprintf("%s%d-wrongmarker", dirPrefix, dead),
				"other name":   fmt.Sprintf("other-%d-x", dead),
			}
			for why, name := range keep {
				dir := filepath.Join(parent, name)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				marker := markerText
				switch why {
				case "no marker":
					continue
				case "wrong marker":
					marker = "someone else's\n"
				}
				if err := os.WriteFile(filepath.Join(dir, markerFile), []byte(marker), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			reapOrphans(ctx, parent)

			if running(pid) {
				t.Errorf("orphaned server %d still running", pid)
			} else {
				orphan.mu.Lock()
				orphan.running = false // nothing left for Close to stop
				orphan.mu.Unlock()
			}
			if _, err := os.Stat(orphan.dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("orphan's directory: %v, want it removed", err)
			}
			for why, name := range keep {
				if _, err := os.Stat(filepath.Join(parent, name)); err != nil {
					t.Errorf("%s: %v, want the directory kept", why, err)
				}
			}
		})
	}
}

func TestRunning(t *testing.T) {
	if !running(os.Getpid()) {
		t.Error("this process is not running")
	}
	if running(deadPid(t)) {
		t.Error("an exited process is running")
	}
	// An exited child not yet waited for is a zombie.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for running(cmd.Process.Pid) {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatal("a zombie counts as running")
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"15", "15", 0},
		{"16", "15", 1},
		{"9.6", "15", -1},
		{"10", "9.6", 1},
		{"9.6", "9.5", 1},
		{"9", "9.0", 0},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if sign(got) != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
