package testdb

import (
	"context"
	"database/sql"
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
		})
	}
}
