package integration

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/sessions"
)

// Through PgBouncer, PGOPTIONS (the startup parameter "options") is either
// refused, failing the command's every connection, or, when listed in
// ignore_startup_parameters, silently dropped. Probe tells which, and
// Apply then leaves PGOPTIONS alone and says so.

var bothSettings = sessions.Settings{DeadClientTimeout: 30 * time.Second, LockTimeout: 5 * time.Second}

// TestSessionsPgBouncerRefusesOptions: testdb's PgBouncer in transaction
// mode refuses a client whose startup packet carries options: a Rails
// migration given PGOPTIONS cannot connect at all. Probe finds it out, and
// with its answer Apply sets no PGOPTIONS, so the migration runs.
func TestSessionsPgBouncerRefusesOptions(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	bouncer := srv.PgBouncer(t, "transaction", 2)
	db, _ := srv.CreateDatabase(t)
	url := bouncer.URL(db)

	pg := probe(t, url)
	t.Logf("probe: %+v", pg)
	if pg.OptionsReach || !strings.Contains(pg.Why, "refuses connections that carry startup options (unsupported startup parameter: options (SQLSTATE 08P01))") {
		t.Errorf("probe through PgBouncer = %+v, want refused", pg)
	}

	t.Run("PGOPTIONS set anyway", func(t *testing.T) {
		t.Parallel()
		app := railsApp(t)
		env, _ := sessionsEnv(t, url, map[string]string{"PGOPTIONS": "-c lock_timeout=5s"}, sessions.Settings{}, sessions.Postgres{})
		status, stdout, stderr := migrate(t, app, env)
		t.Logf("rails exited %d:\n%s%s", status, stdout, stderr)
		if status != 1 || !strings.Contains(stderr, "unsupported startup parameter: options") {
			t.Errorf("rails through PgBouncer with PGOPTIONS should fail to connect")
		}
	})
	t.Run("applied with the probe's answer", func(t *testing.T) {
		t.Parallel()
		app := railsApp(t)
		addMigration(t, app, "20240301000000", "show_settings", showSettings("SHOW #{name}", "lock_timeout", "tcp_user_timeout"))
		env, notes := sessionsEnv(t, url, nil, bothSettings, pg)
		if _, set := env["PGOPTIONS"]; set || len(notes) != 1 || !strings.HasPrefix(notes[0], "PGOPTIONS not set: ") {
			t.Errorf("PGOPTIONS %q, notes %q; want PGOPTIONS unset and one note saying so", env["PGOPTIONS"], notes)
		}
		status, stdout, stderr := migrate(t, app, env)
		if status != 0 {
			t.Fatalf("rails exited %d:\n%s%s", status, stdout, stderr)
		}
		assertValues(t, sessionValues(stdout), map[string]string{"lock_timeout": "0", "tcp_user_timeout": "0"}, stdout, stderr)
		assertNoSecret(t, srv.Password(), result{stderr: strings.Join(notes, "\n")})
	})
}

// TestSessionsPgBouncerIgnoresOptions: a PgBouncer with
// ignore_startup_parameters = options accepts the connection and drops the
// options without a word: the Rails migration runs with none of the
// settings. Probe tells this apart from a server that applies them.
func TestSessionsPgBouncerIgnoresOptions(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	bouncerURL := ignoringBouncer(t, srv)
	db, _ := srv.CreateDatabase(t)
	url := bouncerURL(db)

	pg := probe(t, url)
	t.Logf("probe: %+v", pg)
	if pg.OptionsReach || !strings.Contains(pg.Why, "accepts startup options but does not apply them") {
		t.Errorf("probe through the ignoring PgBouncer = %+v, want ignored", pg)
	}

	app := railsApp(t)
	addMigration(t, app, "20240301000000", "show_settings", showSettings("SHOW #{name}", "lock_timeout", "tcp_user_timeout"))
	env, _ := sessionsEnv(t, url, map[string]string{"PGOPTIONS": "-c lock_timeout=5s -c tcp_user_timeout=28000"}, sessions.Settings{}, sessions.Postgres{})
	status, stdout, stderr := migrate(t, app, env)
	if status != 0 {
		t.Fatalf("rails exited %d:\n%s%s", status, stdout, stderr)
	}
	assertValues(t, sessionValues(stdout), map[string]string{"lock_timeout": "0", "tcp_user_timeout": "0"}, stdout, stderr)

	if env, notes := sessions.Apply(map[string]string{"DATABASE_URL": url}, bothSettings, pg); env["PGOPTIONS"] != "" || len(notes) != 1 {
		t.Errorf("Apply: PGOPTIONS %q, notes %q; want PGOPTIONS unset and one note", env["PGOPTIONS"], notes)
	}
}

// TestSessionsProbeDirect: straight to PostgreSQL the options are honoured
// and the server's version is known.
func TestSessionsProbeDirect(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	_, url := srv.CreateDatabase(t)
	if pg := probe(t, url); !pg.OptionsReach || pg.Version < 150000 || pg.Why != "" {
		t.Errorf("probe straight to PostgreSQL 15 = %+v", pg)
	}
}

// ignoringBouncer starts a PgBouncer in transaction mode with
// ignore_startup_parameters = options in front of srv, and returns the URL
// of a database through it. testdb.PgBouncer has no way to add a setting;
// this is the smallest copy of it that does.
func ignoringBouncer(t *testing.T, srv *testdb.Server) func(db string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgbouncer: %v", err)
		}
		t.Skipf("pgbouncer: %v", err)
	}
	dir, err := os.MkdirTemp("", "migrun-pgb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // PgBouncer refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	files := map[string]string{
		"userlist.txt": fmt.Sprintf("%q %q\n", testdb.AppUser, srv.Password()),
		"pgbouncer.ini": fmt.Sprintf(`[databases]
* = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
default_pool_size = 2
ignore_startup_parameters = options
logfile = %s
`, srv.Host(), srv.Port(), port, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.log")),
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(bin, "-q", filepath.Join(dir, "pgbouncer.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitFor(t, "pgbouncer to listen", timeoutLong, func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer exited:\n%s", log)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return func(db string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/%s", testdb.AppUser, url.PathEscape(srv.Password()), addr, db)
	}
}
