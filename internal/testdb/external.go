package testdb

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"

	"github.com/go-sql-driver/mysql"
)

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

func derivedPassword(adminURL string) string {
	sum := sha256.Sum256([]byte("migrun testdb app user\x00" + adminURL))
	return "pw" + alphabet(sum[:20])
}
