package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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
		for _, s := range append([]string{"BEGIN"}, statements...) {
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

// holdSnapshot (PostgreSQL) opens a transaction whose snapshot is older
// than anything that follows: CREATE INDEX CONCURRENTLY waits for it,
// whatever tables it reads.
func holdSnapshot(t *testing.T, url string) *blocker {
	t.Helper()
	conn := namedPgConn(t, url, blockerName)
	b := &blocker{}
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&b.pid); err != nil {
		t.Fatal(err)
	}
	pgExec(t, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	pgExec(t, conn, "SELECT 1") // takes the snapshot
	b.release = once(func() { pgExec(t, conn, "COMMIT") })
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

// resultReceiver stands in for MIGRUN_WEBHOOK_URL's receiver: the result
// documents, in the order received.
type resultReceiver struct {
	mu   sync.Mutex
	docs []map[string]any
}

func newResultReceiver(t *testing.T) (*resultReceiver, string) {
	t.Helper()
	rc := &resultReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var doc map[string]any
		if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
			t.Errorf("the result webhook got no JSON: %v", err)
		}
		rc.mu.Lock()
		rc.docs = append(rc.docs, doc)
		rc.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return rc, srv.URL + "/result"
}

// last is the last document received; the test fails without one.
func (rc *resultReceiver) last(t *testing.T) map[string]any {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.docs) == 0 {
		t.Fatal("no result document received")
	}
	return rc.docs[len(rc.docs)-1]
}

// attempts are a document's attempts.
func attempts(doc map[string]any) []any {
	a, _ := doc["attempts"].([]any)
	return a
}

// ddlWaiting reports whether an ALTER TABLE in db waits for a table lock,
// as conn (the app's account, which sees the migration's sessions) sees it.
func ddlWaiting(t *testing.T, srv *testdb.Server, db string, pg *pgx.Conn, my *sql.Conn) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	var err error
	if srv.Kind() == testdb.KindPostgreSQL {
		err = pg.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'ALTER TABLE%'").Scan(&n)
	} else {
		err = my.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND STATE = 'Waiting for table metadata lock' AND INFO LIKE 'ALTER TABLE%'", db).Scan(&n)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// latencyProbe queries a table every 100 ms from a session of its own, as
// the app's traffic would, and keeps its worst latency.
type latencyProbe struct {
	stop  context.CancelFunc
	done  chan struct{}
	mu    sync.Mutex
	worst time.Duration
	n     int
}

func startProbe(t *testing.T, srv *testdb.Server, url, table string) *latencyProbe {
	t.Helper()
	var query func(context.Context) error
	q := "SELECT count(*) FROM " + table
	if srv.Kind() == testdb.KindPostgreSQL {
		conn := namedPgConn(t, url, "ddl-probe")
		query = func(ctx context.Context) error { var n int64; return conn.QueryRow(ctx, q).Scan(&n) }
	} else {
		conn := namedMyConn(t, url, "ddl-probe")
		query = func(ctx context.Context) error { var n int64; return conn.QueryRowContext(ctx, q).Scan(&n) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &latencyProbe{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			start := time.Now()
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Minute)
			err := query(qctx)
			qcancel()
			if err != nil && ctx.Err() == nil {
				t.Errorf("probe: %v", err)
				return
			}
			p.mu.Lock()
			p.worst, p.n = max(p.worst, time.Since(start)), p.n+1
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.finish)
	return p
}

// finish stops the probe and returns its worst latency and query count.
func (p *latencyProbe) finish() {
	p.stop()
	<-p.done
}

func (p *latencyProbe) result() (time.Duration, int) {
	p.finish()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.worst, p.n
}
