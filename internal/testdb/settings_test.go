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

// queryAs runs a one-value query over TCP at host as user. The client's
// address is host too: a connection to any 127.x address otherwise comes
// from 127.0.0.1, which the server admits as loopback.
func queryAs(t *testing.T, s *Server, host, user, password, db, query string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}
	var v sql.NullString
	if s.Kind() == KindPostgreSQL {
		cfg, err := pgx.ParseConfig("sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = host, uint16(s.Port()), user, password, db
		cfg.DialFunc = dialer.DialContext
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return "", err
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, query).Scan(&v)
		return v.String, err
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp-from-"+host, net.JoinHostPort(host, strconv.Itoa(s.Port())), db
	mysql.RegisterDialContext(cfg.Net, func(ctx context.Context, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", addr)
	})
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dbh := sql.OpenDB(c)
	defer dbh.Close()
	err = dbh.QueryRowContext(ctx, query).Scan(&v)
	return v.String, err
}

// TestListenAndSetGlobal: a private server listening on one more address
// (127.0.0.2, on lo without any setup) admits AppUser there, but not the
// admin, also after a restart; SetGlobal reaches every new session and is
// undone at the end of the (sub)test.
func TestListenAndSetGlobal(t *testing.T) {
	for _, tc := range []struct {
		kind, admin, adminPassword string
		setting, value, shown      string
		query                      string
	}{
		{KindPostgreSQL, "postgres", superuserPassword, "idle_session_timeout", "1500ms", "1500ms", "SELECT current_setting('idle_session_timeout')"},
		{KindMariaDB, "root", "", "wait_timeout", "7", "7", "SELECT @@SESSION.wait_timeout"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, tc.kind, Options{Listen: []string{"127.0.0.2"}})
			db, url := s.CreateDatabase(t)
			if want := "@127.0.0.1:" + strconv.Itoa(s.Port()) + "/"; !strings.Contains(url, want) {
				t.Errorf("URL %q does not use loopback", url)
			}
			if got := s.URLAt("127.0.0.2:5", db); !strings.Contains(got, "@127.0.0.2:5/"+db) || !strings.Contains(got, s.Password()) {
				t.Errorf("URLAt = %q", got)
			}
			for round := range 2 {
				if _, err := queryAs(t, s, "127.0.0.2", AppUser, s.Password(), db, "SELECT 1"); err != nil {
					t.Fatalf("round %d: AppUser at 127.0.0.2: %v", round, err)
				}
				if _, err := queryAs(t, s, "127.0.0.2", tc.admin, tc.adminPassword, "", "SELECT 1"); err == nil {
					t.Fatalf("round %d: the admin got in at 127.0.0.2", round)
				}
				if round == 0 {
					s.Stop(t)
					s.Start(t)
				}
			}

			before, err := queryAs(t, s, "127.0.0.1", AppUser, s.Password(), db, tc.query)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("set", func(t *testing.T) {
				s.SetGlobal(t, Settings{tc.setting: tc.value})
				got, err := queryAs(t, s, "127.0.0.1", AppUser, s.Password(), db, tc.query)
				if err != nil || got != tc.shown {
					t.Errorf("%s in a new session = %q, %v; want %q", tc.setting, got, err, tc.shown)
				}
			})
			after, err := queryAs(t, s, "127.0.0.1", AppUser, s.Password(), db, tc.query)
			if err != nil || after != before {
				t.Errorf("%s after the test = %q, %v; want it restored to %q", tc.setting, after, err, before)
			}
		})
	}
}

// TestSetRoleSettings: role settings for one database of the shared server
// reach AppUser's sessions there, not in other databases, and are reset at
// the end of the (sub)test.
func TestSetRoleSettings(t *testing.T) {
	t.Parallel()
	s := Postgres(t)
	db, _ := s.CreateDatabase(t)
	other, _ := s.CreateDatabase(t)
	show := func(db string) string {
		t.Helper()
		v, err := queryAs(t, s, s.Host(), AppUser, s.Password(), db,
			"SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Run("set", func(t *testing.T) {
		s.SetRoleSettings(t, db, Settings{"statement_timeout": "2s", "lock_timeout": "1500ms"})
		if got := show(db); got != "2s 1500ms" {
			t.Errorf("in %s: %q, want %q", db, got, "2s 1500ms")
		}
		if got := show(other); got != "0 0" {
			t.Errorf("in another database: %q, want the defaults", got)
		}
	})
	if got := show(db); got != "0 0" {
		t.Errorf("after the test: %q, want the defaults back", got)
	}
}

func TestSettingsCheck(t *testing.T) {
	for _, tc := range []struct {
		settings Settings
		ok       bool
	}{
		{Settings{"wait_timeout": "2", "statement_timeout": "1500ms", "x.y": "ON"}, true},
		{Settings{"wait_timeout": "2; DROP DATABASE x"}, false},
		{Settings{"wait_timeout": "'2'"}, false},
		{Settings{"Wait-Timeout": "2"}, false},
	} {
		if err := tc.settings.check(); (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.settings, err)
		}
	}
	for v, want := range map[string]string{"2": "2", "1.5": "1.5", "ON": "'ON'", "-1": "-1"} {
		if got := mariaDBLiteral(v); got != want {
			t.Errorf("mariaDBLiteral(%q) = %s, want %s", v, got, want)
		}
	}
}
