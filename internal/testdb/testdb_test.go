package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"net"
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
	for name, s := range map[string]*Server{"postgresql": Postgres(t), "mariadb": MariaDB(t)} {
		t.Run(name, func(t *testing.T) {
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
			return s, fmt.Sprintf("postgres://postgres:unused-superuser-password@127.0.0.1:%d/postgres?sslmode=disable", s.Port())
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
			if strings.Contains(first.Password(), "adminpw") || strings.Contains(first.Password(), "unused") {
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
