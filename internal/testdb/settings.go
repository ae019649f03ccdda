package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// listenAddresses is the server's listen list: loopback and Options.Listen,
// or only the wildcard when there is one (it covers loopback, and a
// wildcard and a specific address cannot both be bound to one port).
func (s *Server) listenAddresses() string {
	for _, a := range s.listen {
		if a == "0.0.0.0" || a == "*" {
			return "0.0.0.0"
		}
	}
	return strings.Join(append([]string{"127.0.0.1"}, s.listen...), ",")
}

// URLAt is URL(db) with another address (host:port) in place of the
// server's: a relay in front of it, or an address it listens on besides
// loopback (Options.Listen).
func (s *Server) URLAt(addr, db string) string {
	scheme := "postgres"
	if s.kind == KindMariaDB {
		scheme = "mysql2"
	}
	return fmt.Sprintf("%s://%s:%s@%s/%s", scheme, AppUser, url.PathEscape(s.password), addr, db)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.host, fmt.Sprint(s.port)) }

// Settings are server settings by name. Values are plain words, numbers
// or durations ("2s", "2", "ON"), which the helpers quote as each server
// needs.
type Settings map[string]string

var (
	settingName  = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)
	settingValue = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
	number       = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
)

// check refuses what cannot be put into SQL as it is.
func (st Settings) check() error {
	for k, v := range st {
		if !settingName.MatchString(k) || !settingValue.MatchString(v) {
			return fmt.Errorf("setting %s = %q: only letters, digits, '_' and '.' are allowed", k, v)
		}
	}
	return nil
}

func (st Settings) names() []string {
	names := make([]string, 0, len(st))
	for k := range st {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// SetRoleSettings makes AppUser's new PostgreSQL sessions in database db
// start with settings (ALTER ROLE … IN DATABASE … SET), as a managed
// database's role defaults would; db "" sets them in every database
// (ALTER ROLE … SET), which needs a private server. They are reset at the
// test's end. Sessions already open keep their values.
func (s *Server) SetRoleSettings(tb testing.TB, db string, settings Settings) {
	tb.Helper()
	if s.kind != KindPostgreSQL {
		tb.Fatalf("role settings are PostgreSQL's; for %s use SetGlobal", s.kind)
	}
	if db == "" && (s.shared || s.dir == "") {
		tb.Fatal("role settings for every database need a private server (NewServer)")
	}
	if err := settings.check(); err != nil {
		tb.Fatal(err)
	}
	target := "ROLE " + AppUser
	if db != "" {
		target += " IN DATABASE " + db
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, k := range settings.names() {
			if err := s.exec(ctx, "", fmt.Sprintf("ALTER %s RESET %s", target, k)); err != nil {
				tb.Logf("reset %s: %v", k, err)
			}
		}
	})
	for _, k := range settings.names() {
		s.Exec(tb, "", fmt.Sprintf("ALTER %s SET %s = '%s'", target, k, settings[k]))
	}
}

// SetGlobal sets server-wide settings for every new session, and restores
// them at the test's end: PostgreSQL's ALTER SYSTEM and a reload (they
// survive a restart), MariaDB's SET GLOBAL (lost at a restart: set them
// again after Start). Only on a private server: the shared ones serve
// every test at once. It returns once a new session sees the new values;
// PostgreSQL settings that need a restart are refused.
func (s *Server) SetGlobal(tb testing.TB, settings Settings) {
	tb.Helper()
	if s.shared || s.dir == "" {
		tb.Fatal("global settings need a private server (NewServer, NewPostgres, NewMariaDB)")
	}
	if err := settings.check(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.kind == KindPostgreSQL {
		s.setGlobalPostgres(ctx, tb, settings)
		return
	}
	s.setGlobalMariaDB(ctx, tb, settings)
}

func (s *Server) setGlobalPostgres(ctx context.Context, tb testing.TB, settings Settings) {
	tb.Helper()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		for _, k := range settings.names() {
			if err = s.exec(ctx, "", "ALTER SYSTEM RESET "+k); err != nil {
				break
			}
		}
		if err == nil {
			err = s.exec(ctx, "", "SELECT pg_reload_conf()")
		}
		if err != nil {
			tb.Logf("restore global settings: %v", err)
		}
	})
	want := map[string]string{}
	for _, k := range settings.names() {
		// ALTER SYSTEM cannot run in a transaction: one statement at a time.
		s.Exec(tb, "", fmt.Sprintf("ALTER SYSTEM SET %s = '%s'", k, settings[k]))
		// The value as the server shows it ("1000ms" shows as "1s").
		var shown string
		if err := s.queryString(ctx, fmt.Sprintf("SELECT set_config('%s', '%s', false)", k, settings[k]), &shown); err != nil {
			tb.Fatalf("postgresql: %s = %s: %v", k, settings[k], err)
		}
		want[k] = shown
	}
	s.Exec(tb, "", "SELECT pg_reload_conf()")
	// The postmaster reloads asynchronously: wait until a new session has them.
	for _, k := range settings.names() {
		s.waitSetting(ctx, tb, fmt.Sprintf("SELECT current_setting('%s')", k), want[k])
	}
}

func (s *Server) setGlobalMariaDB(ctx context.Context, tb testing.TB, settings Settings) {
	tb.Helper()
	old := map[string]string{}
	for _, k := range settings.names() {
		var v string
		if err := s.queryString(ctx, "SELECT @@GLOBAL."+k, &v); err != nil {
			tb.Fatalf("mariadb: read %s: %v", k, err)
		}
		old[k] = v
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, k := range settings.names() {
			if err := s.exec(ctx, "", fmt.Sprintf("SET GLOBAL %s = %s", k, mariaDBLiteral(old[k]))); err != nil {
				tb.Logf("restore %s: %v", k, err)
			}
		}
	})
	for _, k := range settings.names() {
		s.Exec(tb, "", fmt.Sprintf("SET GLOBAL %s = %s", k, mariaDBLiteral(settings[k])))
	}
	for _, k := range settings.names() {
		var want string
		if err := s.queryString(ctx, "SELECT @@GLOBAL."+k, &want); err != nil {
			tb.Fatalf("mariadb: read %s: %v", k, err)
		}
		// @@name: the session's copy where there is one, else the global.
		s.waitSetting(ctx, tb, "SELECT @@"+k, want)
	}
}

// mariaDBLiteral quotes a value unless it is a number: SET GLOBAL refuses
// a quoted number for a numeric variable.
func mariaDBLiteral(v string) string {
	if number.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// waitSetting polls new admin sessions until query returns want.
func (s *Server) waitSetting(ctx context.Context, tb testing.TB, query, want string) {
	tb.Helper()
	var got string
	for {
		err := s.queryString(ctx, query, &got)
		if err == nil && got == want {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%s: %s is %q, %v; want %q", s.kind, query, got, err, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// queryString runs a one-value query as the admin, in a new session.
func (s *Server) queryString(ctx context.Context, query string, v *string) error {
	if s.kind == KindPostgreSQL {
		conn, err := s.pgAdmin(ctx, "")
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return conn.QueryRow(ctx, query).Scan(v)
	}
	dbh, err := s.myAdmin("")
	if err != nil {
		return err
	}
	defer dbh.Close()
	var ns sql.NullString
	if err := dbh.QueryRowContext(ctx, query).Scan(&ns); err != nil {
		return err
	}
	*v = ns.String
	return nil
}
