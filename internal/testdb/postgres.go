package testdb

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// superuserPassword is the postgres role's password. Local sockets need
// none (trust); a fixed one lets a test reach the superuser over TCP, as
// through an admin URL, on a server nobody else can reach.
const superuserPassword = "unused-superuser-password"

func (s *Server) initPostgres(ctx context.Context, pickPort func() (int, error)) error {
	pwfile := filepath.Join(s.dir, "pw")
	if err := os.WriteFile(pwfile, []byte(superuserPassword+"\n"), 0o600); err != nil {
		return err
	}
	if s.runAs != nil {
		if err := os.Chown(pwfile, int(s.runAs.Uid), int(s.runAs.Gid)); err != nil {
			return err
		}
	}
	if err := s.run(ctx, pgBin("initdb"), "-D", s.dataDir(), "-U", "postgres", "--no-sync",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile, "-E", "UTF8", "--locale=C"); err != nil {
		return err
	}
	if len(s.listen) > 0 {
		// AppUser only: the superuser's password is no secret.
		hba := fmt.Sprintf("host all %s 0.0.0.0/0 scram-sha-256\n", AppUser)
		f, err := os.OpenFile(filepath.Join(s.dataDir(), "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(hba)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if err := s.startNew(ctx, pickPort); err != nil {
		return err
	}
	s.admin = fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.dir, s.port)
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'", AppUser, s.password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", AppUser, AppUser),
	} {
		if err := s.exec(ctx, "", q); err != nil {
			return fmt.Errorf("set up the app user: %w", err)
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
	opts := fmt.Sprintf("-p %d -k %s -h %s -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=300 -c shared_buffers=32MB", s.port, s.dir, s.listenAddresses())
	err := s.run(ctx, pgBin("pg_ctl"), "-D", s.dataDir(), "-l", logFile, "-o", opts, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "start")
	if err != nil {
		// pg_ctl only says "see the log"; the reason is in the log.
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("%w\npostgres.log:\n%s", err, tail(string(log), 2000))
	}
	s.running = true
	return nil
}

// stopPostgres stops the server with a fast shutdown (sessions are ended),
// falling back to an immediate one, which needs nothing from the sessions.
// Called with s.mu held.
func (s *Server) stopPostgres(ctx context.Context) error {
	pgCtl := pgBin("pg_ctl")
	err := s.run(ctx, pgCtl, "-D", s.dataDir(), "-m", "fast", "-w", "-t", "30", "stop")
	if err == nil {
		return nil
	}
	slog.Warn("testdb: fast shutdown of postgres failed, trying immediate", "dir", s.dir, "err", err)
	if err2 := s.run(ctx, pgCtl, "-D", s.dataDir(), "-m", "immediate", "-w", "-t", "10", "stop"); err2 != nil {
		return fmt.Errorf("%w\nimmediate shutdown: %w", err, err2)
	}
	return nil
}

// pgBin names a PostgreSQL server tool: from the newest version installed
// under /usr/lib/postgresql (Debian's layout) that has the server, else
// the bare name, found in PATH.
func pgBin(name string) string {
	if dir := pgBinDir(); dir != "" {
		return filepath.Join(dir, name)
	}
	return name
}

func pgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest first: "15" after "9.6", by number.
	slices.SortFunc(dirs, func(a, b string) int {
		return -compareVersions(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	for _, dir := range dirs {
		complete := true
		// A client-only install has a bin dir without the server.
		for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, tool)); err != nil {
				complete = false
			}
		}
		if complete {
			return dir
		}
	}
	return ""
}

// compareVersions compares dotted version numbers ("9.6", "15") by number.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}
