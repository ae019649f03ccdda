package testdb

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Bouncer is a PgBouncer (Debian's pgbouncer package) in front of a
// PostgreSQL server, for tests of what a connection pooler does to locks.
type Bouncer struct {
	server *Server
	port   int
	dir    string
	proc   *os.Process
	exited chan error
}

// PgBouncer starts a PgBouncer with the given pool_mode ("transaction" or
// "session") and at most poolSize server connections per database, in front
// of s and every database of s; it stops at the end of the test. Without
// pgbouncer installed the test skips, or fails under CI.
func (s *Server) PgBouncer(tb testing.TB, poolMode string, poolSize int) *Bouncer {
	tb.Helper()
	if s.kind != KindPostgreSQL {
		tb.Fatalf("PgBouncer needs a PostgreSQL server, not %s", s.kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	b, err := startBouncer(ctx, s, poolMode, poolSize)
	if err != nil {
		unavailable(tb, fmt.Errorf("pgbouncer: %w", err))
	}
	tb.Cleanup(func() {
		if err := b.close(); err != nil {
			tb.Logf("stop pgbouncer: %v", err)
		}
	})
	return b
}

// URL is a Rails URL for db as AppUser through the pooler, with the password.
func (b *Bouncer) URL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s", AppUser, url.PathEscape(b.server.password),
		net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), db)
}

func startBouncer(ctx context.Context, s *Server, poolMode string, poolSize int) (*Bouncer, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return nil, fmt.Errorf("pgbouncer is not installed (apt-get install pgbouncer): %w", err)
	}
	// PgBouncer refuses to run as root.
	runAs, err := serverUser(KindPostgreSQL)
	if err != nil {
		return nil, err
	}
	dir, err := newServerDir(ctx, Options{}, runAs)
	if err != nil {
		return nil, err
	}
	b := &Bouncer{server: s, dir: dir}
	// Its password in plain text lets PgBouncer answer the server's SCRAM
	// challenge as the client; nobody else can read the file.
	users := fmt.Sprintf("%q %q\n", AppUser, s.password)
	if err := writeOwned(filepath.Join(dir, "userlist.txt"), users, 0o600, runAs); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if b.port, err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		err = b.start(ctx, bin, poolMode, poolSize, runAs)
		if err == nil {
			return b, nil
		}
		if attempt == 3 || !portTaken(b.port) {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (b *Bouncer) start(ctx context.Context, bin, poolMode string, poolSize int, runAs *syscall.Credential) error {
	config := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = 500
pidfile = %s
logfile = %s
`, b.server.host, b.server.port, b.port, filepath.Join(b.dir, "userlist.txt"), poolMode, poolSize,
		filepath.Join(b.dir, "pgbouncer.pid"), filepath.Join(b.dir, "pgbouncer.log"))
	ini := filepath.Join(b.dir, "pgbouncer.ini")
	if err := writeOwned(ini, config, 0o644, runAs); err != nil {
		return err
	}
	// Not CommandContext: the pooler outlives the start's deadline.
	cmd := exec.Command(bin, "-q", ini)
	cmd.Dir = b.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: runAs, Setpgid: true}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	exited, err := startDaemon(ctx, cmd, filepath.Join(b.dir, "pgbouncer.log"), func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	b.proc, b.exited = cmd.Process, exited
	return nil
}

// close stops PgBouncer at once (SIGTERM: immediate shutdown, clients are
// cut) and removes its files.
func (b *Bouncer) close() error {
	_ = b.proc.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		_ = b.proc.Kill()
		<-b.exited
	}
	return os.RemoveAll(b.dir)
}

func writeOwned(path, content string, mode os.FileMode, owner *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	if owner != nil && os.Geteuid() == 0 {
		return os.Chown(path, int(owner.Uid), int(owner.Gid))
	}
	return nil
}
