package integration

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/rails"
)

// Helpers of the issue 14 tests (ddl_*_test.go): blockers, and Rails run
// with its output captured as migrun captures it.

// blockerName is the application_name (PostgreSQL) and program_name
// (MariaDB) of the sessions that block migrations in these tests: the
// result must name it.
const blockerName = "ddl-blocker"

// startRailsLikeMigrun runs args (default `bundle exec rails db:migrate`)
// in app with exactly env, stdout and stderr into one buffer and Ruby's
// output unbuffered (rails.SyncOutput), as migrun's runner captures it.
func startRailsLikeMigrun(t *testing.T, app string, env map[string]string, args ...string) *railsRun {
	t.Helper()
	if len(args) == 0 {
		args = []string{"bundle", "exec", "rails", "db:migrate"}
	}
	opt, remove, err := rails.SyncOutput(env["RUBYOPT"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	r := &railsRun{cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	r.cmd.Dir = app
	for k, v := range env {
		r.cmd.Env = append(r.cmd.Env, k+"="+v)
	}
	r.cmd.Env = append(r.cmd.Env, "RUBYOPT="+opt)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stdout
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	})
	return r
}

// blocker is a session of its own (named blockerName) holding a
// transaction open until released.
type blocker struct {
	pid     int64 // backend pid / connection id
	release func()
}

// blockTable opens a transaction that reads table (taking PostgreSQL's
// ACCESS SHARE lock, MariaDB's shared metadata lock, until it ends), the
// outage issue 14 is about: any ALTER TABLE queues behind it, and every
// query on the table behind the ALTER.
func blockTable(t *testing.T, srv *testdb.Server, url, table string) *blocker {
	t.Helper()
	return holdTransaction(t, srv, url, "SELECT count(*) FROM "+table)
}

// holdTransaction runs statements in a transaction and keeps it open.
func holdTransaction(t *testing.T, srv *testdb.Server, url string, statements ...string) *blocker {
	t.Helper()
	if srv.Kind() == testdb.KindPostgreSQL {
		conn := namedPgConn(t, url, blockerName)
		b := &blocker{}
		if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&b.pid); err != nil {
			t.Fatal(err)
		}
		begin := "BEGIN"
		if len(statements) > 0 && statements[0] == "BEGIN ISOLATION LEVEL REPEATABLE READ" {
			begin, statements = statements[0], statements[1:]
		}
		pgExec(t, conn, begin)
		for _, s := range statements {
			pgExec(t, conn, s)
		}
		b.release = once(func() { pgExec(t, conn, "COMMIT") })
		return b
	}
	conn := namedMyConn(t, url, blockerName)
	b := &blocker{}
	if err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&b.pid); err != nil {
		t.Fatal(err)
	}
	myExec(t, conn, "START TRANSACTION")
	for _, s := range statements {
		myExec(t, conn, s)
	}
	b.release = once(func() { myExec(t, conn, "COMMIT") })
	return b
}

// namedPgConn is pgConn with an application_name.
func namedPgConn(t *testing.T, url, name string) *pgx.Conn {
	t.Helper()
	u, err := dburl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dbconn.PostgresConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	dbconn.PostgresIdentity(cfg, name)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// namedMyConn is myConn with a program_name.
func namedMyConn(t *testing.T, url, name string) *sql.Conn {
	t.Helper()
	u, err := dburl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dbconn.MySQLConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	dbconn.MySQLIdentity(cfg, name)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); db.Close() })
	return conn
}

// withoutMigration removes one of the app's own migrations from its copy.
func withoutMigration(t *testing.T, app, file string) {
	t.Helper()
	if err := os.Remove(filepath.Join(app, "db", "migrate", file)); err != nil {
		t.Fatal(err)
	}
}
