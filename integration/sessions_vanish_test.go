package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/sessions"
)

// The vanished migration: a Rails migration holds (or waits for) a lock on
// users when its client vanishes: every packet between it and the server
// dropped, as when its node is lost. The server must end the session, and
// free the table, within the bound D; without the settings it does not.

// vanishBound is D for these tests; the server must act within D plus a
// generous margin for a loaded machine.
const (
	vanishBound  = 5 * time.Second
	vanishMargin = 10 * time.Second
)

// blackhole drops every packet between the client port and the server
// port on the loopback, in both directions, until the test ends.
func blackhole(t *testing.T, clientPort, serverPort int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dropping packets needs root (iptables)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables is not installed")
	}
	rules := [][]string{
		{"INPUT", "-i", "lo", "-p", "tcp", "--sport", strconv.Itoa(clientPort), "--dport", strconv.Itoa(serverPort), "-j", "DROP"},
		{"INPUT", "-i", "lo", "-p", "tcp", "--sport", strconv.Itoa(serverPort), "--dport", strconv.Itoa(clientPort), "-j", "DROP"},
	}
	for _, rule := range rules {
		if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables -I %s: %v\n%s", strings.Join(rule, " "), err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
				t.Errorf("iptables -D %s: %v\n%s", strings.Join(rule, " "), err, out)
			}
		})
	}
}

// waitMark waits for the migration to write its session's id to mark.
func waitMark(t *testing.T, r *railsRun, mark string) int64 {
	t.Helper()
	var id int64
	waitFor(t, "the migration to take its lock", timeoutLong, func() bool {
		select {
		case <-r.done:
			t.Fatalf("rails ended early:\n%s%s", r.stdout.String(), r.stderr.String())
		default:
		}
		b, err := os.ReadFile(mark)
		if err != nil || len(b) == 0 {
			return false
		}
		id, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return err == nil
	})
	return id
}

// vanishCase is one migration whose client vanishes, with or without the settings.
type vanishCase struct {
	name     string
	settings sessions.Settings
	pg       sessions.Postgres
	query    string // added to the app's DATABASE_URL
	ends     bool   // the server must end the session within the bound

	app, db, url string
	rails        *railsRun
	session      int64     // backend pid or connection id
	vanished     time.Time // when its packets began to be dropped
	watched      chan struct{}
	endedAfter   time.Duration // 0: not within the bound
	watchErr     error
}

// vanish drops the packets of the case's client from now on, and watches
// from then on, until the bound has passed, whether the server still has
// the session; checkEnded reports what it saw.
func (c *vanishCase) vanish(t *testing.T, clientPort, serverPort int, alive func() (bool, error)) {
	t.Helper()
	blackhole(t, clientPort, serverPort)
	c.vanished = time.Now()
	c.watched = make(chan struct{})
	go func() {
		defer close(c.watched)
		for since := time.Duration(0); since < vanishBound+vanishMargin; since = time.Since(c.vanished) {
			ok, err := alive()
			if err != nil {
				c.watchErr = err
				return
			}
			if !ok {
				c.endedAfter = since
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { <-c.watched })
}

// checkEnded waits for the watch of each case and checks that the server
// ended the session within the bound exactly when it should have.
func checkEnded(t *testing.T, cases ...*vanishCase) {
	t.Helper()
	for _, c := range cases {
		<-c.watched
		switch {
		case c.watchErr != nil:
			t.Errorf("%s: watching the session: %v", c.name, c.watchErr)
		case c.ends && c.endedAfter == 0:
			t.Errorf("%s: the session is still there %s after its client vanished (bound %s)", c.name, vanishBound+vanishMargin, vanishBound)
		case c.ends:
			t.Logf("%s: the server ended the session %s after its client vanished", c.name, c.endedAfter.Round(100*time.Millisecond))
		case c.endedAfter != 0:
			t.Errorf("%s: the session ended %s after its client vanished", c.name, c.endedAfter.Round(100*time.Millisecond))
		}
	}
}

// pgAlive checks, on its own connection, whether backend pid still exists.
func pgAlive(t *testing.T, url string, pid int64) func() (bool, error) {
	t.Helper()
	conn := pgConn(t, url)
	return func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
		return n > 0, err
	}
}

// mariadbAliveCheck checks, on its own connection, whether connection id still exists.
func mariadbAliveCheck(t *testing.T, url string, id int64) func() (bool, error) {
	t.Helper()
	conn := myConn(t, url)
	return func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n int
		err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n)
		return n > 0, err
	}
}

// TestSessionsVanishedMigrationPostgres: a migration holding ACCESS
// EXCLUSIVE on users, idle in its transaction (Ruby sleeping), loses its
// client. With the settings (tcp_keepalives_*, tcp_user_timeout) the server
// ends the session and users is usable within the bound; without them it
// is still locked after the same time.
func TestSessionsVanishedMigrationPostgres(t *testing.T) {
	srv := testdb.Postgres(t)
	cases := []*vanishCase{
		{name: "with the settings", settings: sessions.Settings{DeadClientTimeout: vanishBound}, ends: true},
		{name: "control: without", ends: false},
	}
	for _, c := range cases {
		c.app = railsApp(t)
		mark := filepath.Join(t.TempDir(), "mark")
		addMigration(t, c.app, "20240301000000", "hold_users", fmt.Sprintf(`  def up
    execute "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"
    File.write(%q, select_value("SELECT pg_backend_pid()").to_s)
    sleep 600
  end`, mark))
		c.db, c.url = srv.CreateDatabase(t)
		if c.ends {
			c.pg = probe(t, c.url)
		}
		env, _ := sessionsEnv(t, c.url, nil, c.settings, c.pg)
		c.rails = startRails(t, c.app, env)
		c.session = waitMark(t, c.rails, mark)
		t.Cleanup(func() { srv.Exec(t, "", fmt.Sprintf("SELECT pg_terminate_backend(%d)", c.session)) })
		c.vanish(t, pgClientPort(t, srv, c.db, c.session), srv.Port(), pgAlive(t, c.url, c.session))
	}
	checkEnded(t, cases...)
	for _, c := range cases {
		err := pgTryLock(t, c.url)
		if c.ends && err != nil {
			t.Errorf("%s: users is still locked after the session ended: %v", c.name, err)
		}
		if !c.ends && !isPgLockTimeout(err) {
			t.Errorf("%s: users should still be locked, got %v", c.name, err)
		}
	}
}

// TestSessionsVanishedMidStatementPostgres: a migration whose ALTER TABLE
// waits behind another transaction's lock (and queues every query on the table
// behind itself) loses its client. The backend is busy, not reading the
// socket: keepalives alone let it wait on (control: a PostgreSQL 13
// without client_connection_check_interval); with the check the server ends
// it within the bound.
func TestSessionsVanishedMidStatementPostgres(t *testing.T) {
	srv := testdb.Postgres(t)
	cases := []*vanishCase{
		{name: "with the settings", settings: sessions.Settings{DeadClientTimeout: vanishBound}, ends: true},
		{name: "control: keepalives only (as for PostgreSQL 13)", settings: sessions.Settings{DeadClientTimeout: vanishBound}, ends: false},
	}
	for i, c := range cases {
		c.app = railsApp(t)
		c.db, c.url = srv.CreateDatabase(t)
		c.pg = probe(t, c.url)
		if i == 1 {
			c.pg.Version = 130000
		}
		mark := filepath.Join(t.TempDir(), "mark")
		addMigration(t, c.app, "20240301000000", "add_nickname", fmt.Sprintf(`  def up
    File.write(%q, select_value("SELECT pg_backend_pid()").to_s)
    add_column :accounts, :nickname, :string
  end`, mark))
		holdAccounts(t, srv, c.url)

		env, _ := sessionsEnv(t, c.url, nil, c.settings, c.pg)
		c.rails = startRails(t, c.app, env)
		c.session = waitMark(t, c.rails, mark)
		t.Cleanup(func() { srv.Exec(t, "", fmt.Sprintf("SELECT pg_terminate_backend(%d)", c.session)) })
		waitFor(t, "the migration's ALTER TABLE to wait for its lock", timeoutLong, func() bool {
			return srv.QueryInt(t, c.db, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'", c.session)) > 0
		})
		c.vanish(t, pgClientPort(t, srv, c.db, c.session), srv.Port(), pgAlive(t, c.url, c.session))
	}
	checkEnded(t, cases...)
}

// pgTryLock tries to lock users exclusively, waiting at most a second.
func pgTryLock(t *testing.T, url string) error {
	t.Helper()
	conn := pgConn(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, "BEGIN; SET LOCAL lock_timeout = '1s'; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; COMMIT")
	return err
}

func isPgLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// TestSessionsVanishedMigrationMariaDB: on MariaDB, a migration idle
// inside a transaction that read users (holding its metadata lock) loses
// its client. migrun's settings cannot end it (MySQL has no per-session
// dead-client detection that spares live clients, so migrun sets none:
// see TestSessionsLiveIdleMigrationSurvives) and users stays locked, as
// without them (Rails sets wait_timeout to 2147483 s); the app's own
// wait_timeout in DATABASE_URL, the README's advice for apps that open
// transactions in migrations, ends it and users can be locked again.
func TestSessionsVanishedMigrationMariaDB(t *testing.T) {
	srv := testdb.MariaDB(t)
	cases := []*vanishCase{
		{name: "migrun's settings", settings: sessions.Settings{DeadClientTimeout: vanishBound}, ends: false},
		{name: "the app's own wait_timeout", query: fmt.Sprintf("?wait_timeout=%d", vanishBound/time.Second-2), ends: true},
		{name: "control: without", ends: false},
	}
	for _, c := range cases {
		c.app = railsApp(t)
		mark := filepath.Join(t.TempDir(), "mark")
		addMigration(t, c.app, "20240301000000", "hold_users", fmt.Sprintf(`  def up
    transaction do
      select_value("SELECT COUNT(*) FROM users")
      File.write(%q, select_value("SELECT CONNECTION_ID()").to_s)
      sleep 600
    end
  end`, mark))
		c.db, c.url = srv.CreateDatabase(t)
		env, _ := sessionsEnv(t, c.url+c.query, nil, c.settings, sessions.Postgres{})
		c.rails = startRails(t, c.app, env)
		c.session = waitMark(t, c.rails, mark)
		t.Cleanup(func() { killMariaDB(t, srv, c.session) })
		c.vanish(t, mariadbClientPort(t, srv, c.session), srv.Port(), mariadbAliveCheck(t, c.url, c.session))
	}
	checkEnded(t, cases...)
	for _, c := range cases {
		err := myTryLock(t, c.url)
		if c.ends && err != nil {
			t.Errorf("%s: users is still locked after the session ended: %v", c.name, err)
		}
		if !c.ends && !isMyLockTimeout(err) {
			t.Errorf("%s: users should still be locked, got %v", c.name, err)
		}
	}
}

// TestSessionsVanishedDDLMariaDB: a migration's ALTER TABLE waits for the
// metadata lock another transaction holds when its client vanishes.
// Even the app's own wait_timeout does not apply to a statement in
// progress: the session is still there after the bound, and the ALTER, once
// the other transaction ends, runs to its end for a client long gone; only
// then does wait_timeout end the idle session. (A DDL lock timeout bounds
// the wait.)
func TestSessionsVanishedDDLMariaDB(t *testing.T) {
	srv := testdb.MariaDB(t)
	c := &vanishCase{name: "the app's own wait_timeout", query: fmt.Sprintf("?wait_timeout=%d", vanishBound/time.Second-2)}
	c.app = railsApp(t)
	c.db, c.url = srv.CreateDatabase(t)
	mark := filepath.Join(t.TempDir(), "mark")
	addMigration(t, c.app, "20240301000000", "add_nickname", fmt.Sprintf(`  def up
    File.write(%q, select_value("SELECT CONNECTION_ID()").to_s)
    add_column :accounts, :nickname, :string
  end`, mark))
	release := holdAccounts(t, srv, c.url)

	env, _ := sessionsEnv(t, c.url+c.query, nil, c.settings, sessions.Postgres{})
	c.rails = startRails(t, c.app, env)
	c.session = waitMark(t, c.rails, mark)
	t.Cleanup(func() { killMariaDB(t, srv, c.session) })
	waitFor(t, "the migration's ALTER TABLE to wait for the metadata lock", timeoutLong, func() bool {
		return srv.QueryInt(t, c.db, fmt.Sprintf("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %d AND STATE LIKE 'Waiting for table metadata lock'", c.session)) > 0
	})
	c.vanish(t, mariadbClientPort(t, srv, c.session), srv.Port(), mariadbAliveCheck(t, c.url, c.session))
	checkEnded(t, c)

	release()
	nickname := fmt.Sprintf("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '%s' AND TABLE_NAME = 'accounts' AND COLUMN_NAME = 'nickname'", c.db)
	waitFor(t, "the ALTER TABLE of the vanished client to finish", timeoutLong, func() bool { return srv.QueryInt(t, "", nickname) > 0 })
	done := time.Now()
	waitFor(t, "wait_timeout to end the idle session", vanishBound+vanishMargin, func() bool { return !mariadbAlive(t, srv, c.session) })
	t.Logf("the ALTER TABLE ran to its end for the vanished client; the session ended %s later", time.Since(done).Round(100*time.Millisecond))
}

func pgClientPort(t *testing.T, srv *testdb.Server, db string, pid int64) int {
	t.Helper()
	return int(srv.QueryInt(t, db, fmt.Sprintf("SELECT client_port FROM pg_stat_activity WHERE pid = %d", pid)))
}

func mariadbClientPort(t *testing.T, srv *testdb.Server, id int64) int {
	t.Helper()
	return int(srv.QueryInt(t, "", fmt.Sprintf("SELECT SUBSTRING_INDEX(HOST, ':', -1) FROM information_schema.PROCESSLIST WHERE ID = %d", id)))
}

func mariadbAlive(t *testing.T, srv *testdb.Server, id int64) bool {
	t.Helper()
	return srv.QueryInt(t, "", fmt.Sprintf("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %d", id)) > 0
}

// killMariaDB ends the test's leftover session, if the server has not.
func killMariaDB(t *testing.T, srv *testdb.Server, id int64) {
	if mariadbAlive(t, srv, id) {
		srv.Exec(t, "", fmt.Sprintf("KILL %d", id))
	}
}

// myTryLock tries to lock users for writing, waiting at most a second.
func myTryLock(t *testing.T, url string) error {
	t.Helper()
	conn := myConn(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, q := range []string{"SET SESSION lock_wait_timeout = 1", "LOCK TABLES users WRITE", "UNLOCK TABLES"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func isMyLockTimeout(err error) bool {
	var myErr *mysql.MySQLError
	return errors.As(err, &myErr) && myErr.Number == 1205
}
