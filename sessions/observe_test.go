package sessions

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// commandName stands in for the command's PGAPPNAME.
const commandName = "migrun command test-host 4242"

// TestObserverPostgres: the observer names the session that blocks a
// command session (found by its application_name) waiting on a table
// lock, with what the server shows of it; a blocker of another role
// without pg_read_all_stats shows its pid and name only, and Limits says
// so once. Nothing waiting: no blockers.
func TestObserverPostgres(t *testing.T) {
	t.Parallel()
	srv := testdb.NewPostgres(t) // a role of its own: a global change
	_, rawURL := srv.CreateDatabase(t)
	srv.Exec(t, "", "CREATE ROLE other LOGIN PASSWORD 'otherpw'")
	u := parse(t, rawURL)
	obs := Observe(u, commandName, ObserverOptions{})
	t.Cleanup(func() { obs.Close() })

	ctx := context.Background()
	if got, err := obs.Blockers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("nothing waits: Blockers = %v, %v; want none", got, err)
	}

	owner := pgSession(t, u, "setup")
	pgRun(t, owner, "CREATE TABLE accounts (id int PRIMARY KEY)", "GRANT SELECT ON accounts TO other")
	holder := pgSession(t, u, "web-7")
	holderPID := pgPID(t, holder)
	pgRun(t, holder, "BEGIN", "SELECT count(*)   FROM\n accounts")
	otherURL := *u
	otherURL.User, otherURL.Password = "other", "otherpw"
	other := pgSession(t, &otherURL, "reporting")
	otherPID := pgPID(t, other)
	pgRun(t, other, "BEGIN", "SELECT count(*) FROM accounts")

	command := pgSession(t, u, commandName)
	commandPID := pgPID(t, command)
	altered := make(chan error, 1)
	go func() {
		_, err := command.Exec(context.Background(), "ALTER TABLE accounts ADD COLUMN nickname text")
		altered <- err
	}()

	var got []Blocker
	waitUntil(t, "the observer to see the ALTER blocked", func() bool {
		var err error
		got, err = obs.Blockers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 2
	})
	mine := find(t, got, holderPID)
	if mine.Waiter != commandPID || mine.Waits != "table accounts" || mine.Application != "web-7" || mine.User != testdb.AppUser ||
		mine.State != "idle in transaction" || mine.Query != "SELECT count(*) FROM accounts" || mine.InTransaction <= 0 ||
		mine.Client == "" || mine.Hidden || mine.Probable {
		t.Errorf("the app role's blocker: %+v", mine)
	}
	hidden := find(t, got, otherPID)
	if !hidden.Hidden || hidden.Query != "" || hidden.State != "" || hidden.Application != "reporting" || hidden.User != "other" {
		t.Errorf("another role's blocker, seen without pg_read_all_stats: %+v", hidden)
	}
	t.Logf("blockers:\n%s\n%s", mine, hidden)
	if s := mine.String(); !strings.Contains(s, fmt.Sprintf("pid %d \"web-7\" user %s from ", holderPID, testdb.AppUser)) || !strings.HasSuffix(s, "idle in transaction, transaction open "+roughly(mine.InTransaction).String()+": SELECT count(*) FROM accounts") {
		t.Errorf("String() = %q", s)
	}
	if limits := obs.Limits(); len(limits) != 1 || !strings.Contains(limits[0], "pg_read_all_stats") {
		t.Errorf("Limits() = %q, want one line naming pg_read_all_stats", limits)
	}

	pgRun(t, holder, "COMMIT")
	pgRun(t, other, "COMMIT")
	if err := <-altered; err != nil {
		t.Fatalf("the ALTER, once free: %v", err)
	}
	if got, err := obs.Blockers(ctx); err != nil || len(got) != 0 {
		t.Errorf("after the blockers ended: Blockers = %v, %v; want none", got, err)
	}
}

// TestObserverPostgresReconnects: a connection the server ended is
// replaced at the next call.
func TestObserverPostgresReconnects(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	db, rawURL := srv.CreateDatabase(t)
	obs := Observe(parse(t, rawURL), commandName, ObserverOptions{Name: "observer-reconnect"})
	t.Cleanup(func() { obs.Close() })
	if _, err := obs.Blockers(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Exec(t, db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'observer-reconnect'")
	_, err := obs.Blockers(context.Background()) // may fail: the connection was cut
	if _, err2 := obs.Blockers(context.Background()); err2 != nil {
		t.Errorf("after the server ended the connection: %v, then %v; want the second call to reconnect", err, err2)
	}
}

// TestObserverInvalidIndexes: a failed CREATE INDEX CONCURRENTLY's index
// is listed, qualified and quoted as DROP INDEX needs it; valid ones are not.
func TestObserverInvalidIndexes(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	_, rawURL := srv.CreateDatabase(t)
	u := parse(t, rawURL)
	conn := pgSession(t, u, "setup")
	pgRun(t, conn, "CREATE TABLE users (email text)", "INSERT INTO users VALUES ('a'), ('a')",
		"CREATE INDEX fine ON users (email)", `CREATE SCHEMA "Tenant"`, `CREATE TABLE "Tenant".users (email text)`, `INSERT INTO "Tenant".users VALUES ('b'), ('b')`)
	for _, q := range []string{"CREATE UNIQUE INDEX CONCURRENTLY index_users_on_email ON users (email)", `CREATE UNIQUE INDEX CONCURRENTLY "Odd Name" ON "Tenant".users (email)`} {
		if _, err := conn.Exec(context.Background(), q); err == nil || !strings.Contains(err.Error(), "could not create unique index") {
			t.Fatalf("%s: %v, want the duplicate to fail it", q, err)
		}
	}
	obs := Observe(u, commandName, ObserverOptions{})
	t.Cleanup(func() { obs.Close() })
	got, err := obs.InvalidIndexes(context.Background())
	want := []string{`"Tenant"."Odd Name"`, "public.index_users_on_email"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("InvalidIndexes = %q, %v; want %q", got, err, want)
	}
	for _, name := range got {
		pgRun(t, conn, "DROP INDEX CONCURRENTLY "+name)
	}
	if got, err := obs.InvalidIndexes(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("after DROP INDEX CONCURRENTLY: %q, %v", got, err)
	}
}

// TestObserverMariaDB: what MariaDB 10.11 can show about the holder of the
// metadata lock a DDL statement waits for. By default (performance_schema
// off, no metadata_lock_info plugin) only which transactions are older
// than the waiting statement: the holder is among them, marked probable,
// and Limits says why. With the plugin loaded the server names the holder
// exactly. An account without PROCESS sees another account's holder
// through the plugin, but none of its details, and Limits says so.
func TestObserverMariaDB(t *testing.T) {
	t.Parallel()
	t.Run("default server", func(t *testing.T) {
		t.Parallel()
		srv := testdb.MariaDB(t)
		_, rawURL := srv.CreateDatabase(t)
		u := parse(t, rawURL)
		holder, waiter := myBlocked(t, u, u)
		obs := Observe(u, "", ObserverOptions{})
		t.Cleanup(func() { obs.Close() })
		got := waitBlockers(t, obs, func(bs []Blocker) bool { return len(bs) > 0 })
		b := find(t, got, holder)
		if !b.Probable || b.Waiter != waiter || b.State != "idle in transaction" || b.User != testdb.AppUser || b.Hidden { // InTransaction: whole seconds, may be 0
			t.Errorf("blocker: %+v", b)
		}
		t.Logf("blockers: %v", got)
		if limits := obs.Limits(); len(limits) != 1 || !strings.Contains(limits[0], "metadata_lock_info") {
			t.Errorf("Limits() = %q, want the note that holders are inferred", limits)
		}
	})
	t.Run("metadata_lock_info", func(t *testing.T) {
		t.Parallel()
		srv := testdb.NewMariaDB(t) // installs a plugin: a server of its own
		srv.Exec(t, "", "INSTALL SONAME 'metadata_lock_info'")
		db, rawURL := srv.CreateDatabase(t)
		srv.Exec(t, "", "CREATE USER 'limited'@'%' IDENTIFIED BY 'limitedpw'")
		srv.Exec(t, "", fmt.Sprintf("GRANT ALL ON %s.* TO 'limited'@'%%'", db))
		u := parse(t, rawURL)
		limited := *u
		limited.User, limited.Password = "limited", "limitedpw"
		holder, waiter := myBlocked(t, u, &limited)

		obs := Observe(u, "", ObserverOptions{})
		t.Cleanup(func() { obs.Close() })
		got := waitBlockers(t, obs, func(bs []Blocker) bool { return len(bs) > 0 })
		if len(got) != 1 || got[0].PID != holder || got[0].Waiter != waiter || got[0].Probable || got[0].State != "idle in transaction" || got[0].Hidden {
			t.Errorf("blockers through the plugin: %+v, want exactly connection %d", got, holder)
		}
		t.Logf("blockers: %v", got)
		if limits := obs.Limits(); len(limits) != 0 {
			t.Errorf("Limits() = %q, want none", limits)
		}

		// The command's own account, without PROCESS.
		lobs := Observe(&limited, "", ObserverOptions{})
		t.Cleanup(func() { lobs.Close() })
		got = waitBlockers(t, lobs, func(bs []Blocker) bool { return len(bs) > 0 })
		if len(got) != 1 || got[0].PID != holder || !got[0].Hidden || got[0].User != "" {
			t.Errorf("blockers seen without PROCESS: %+v, want connection %d, hidden", got, holder)
		}
		t.Logf("blockers without PROCESS: %v", got)
		if limits := lobs.Limits(); len(limits) != 1 || !strings.Contains(limits[0], "no PROCESS privilege") {
			t.Errorf("Limits() = %q, want the PROCESS note", limits)
		}
	})
}

// myBlocked makes a holder (as holderURL's account) that read a table in
// an open transaction, and a waiter (as waiterURL's, the command's) whose
// ALTER TABLE waits for it, and returns their connection ids. A query
// queued behind the ALTER, as an app's would be, is no blocker.
func myBlocked(t *testing.T, holderURL, waiterURL *dburl.URL) (holder, waiter int64) {
	t.Helper()
	setup := mySession(t, holderURL, "setup")
	myRun(t, setup, "CREATE TABLE accounts (id int PRIMARY KEY)")
	h := mySession(t, holderURL, "web-7")
	holder = myID(t, h)
	myRun(t, h, "START TRANSACTION", "SELECT COUNT(*) FROM accounts")
	w := mySession(t, waiterURL, "")
	waiter = myID(t, w)
	myRun(t, w, "SET SESSION lock_wait_timeout = 60")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = w.ExecContext(context.Background(), "ALTER TABLE accounts ADD COLUMN nickname varchar(20)")
	}()
	queued := mySession(t, holderURL, "web-8")
	go func() { _, _ = queued.ExecContext(context.Background(), "SELECT COUNT(*) FROM accounts") }()
	t.Cleanup(func() {
		myRun(t, h, "COMMIT")
		<-done
	})
	return holder, waiter
}

func TestCommandAppName(t *testing.T) {
	env := map[string]string{"PGAPPNAME": "migrun command h 1"}
	for raw, want := range map[string]string{
		"postgres://u@h/db":                          "migrun command h 1",
		"postgres://u@h/db?application_name=web%20x": "web x",
	} {
		if got := CommandAppName(parse(t, raw), env); got != want {
			t.Errorf("CommandAppName(%s) = %q, want %q", raw, got, want)
		}
	}
}

func waitBlockers(t *testing.T, obs *Observer, ok func([]Blocker) bool) []Blocker {
	t.Helper()
	var got []Blocker
	waitUntil(t, "the observer to see the ALTER blocked", func() bool {
		var err error
		if got, err = obs.Blockers(context.Background()); err != nil {
			t.Fatal(err)
		}
		return ok(got)
	})
	return got
}

func find(t *testing.T, blockers []Blocker, pid int64) Blocker {
	t.Helper()
	for _, b := range blockers {
		if b.PID == pid {
			return b
		}
	}
	t.Fatalf("blocker %d not among %v", pid, blockers)
	return Blocker{}
}

// waitUntil polls cond (a server's view, which nothing signals) for 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func parse(t *testing.T, raw string) *dburl.URL {
	t.Helper()
	u, err := dburl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func pgSession(t *testing.T, u *dburl.URL, name string) *pgx.Conn {
	t.Helper()
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

func pgRun(t *testing.T, conn *pgx.Conn, statements ...string) {
	t.Helper()
	for _, s := range statements {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := conn.Exec(ctx, s)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func pgPID(t *testing.T, conn *pgx.Conn) int64 {
	t.Helper()
	var pid int64
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func mySession(t *testing.T, u *dburl.URL, name string) *sql.Conn {
	t.Helper()
	cfg, err := dbconn.MySQLConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		dbconn.MySQLIdentity(cfg, name)
	}
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

func myRun(t *testing.T, conn *sql.Conn, statements ...string) {
	t.Helper()
	for _, s := range statements {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := conn.ExecContext(ctx, s)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func myID(t *testing.T, conn *sql.Conn) int64 {
	t.Helper()
	var id int64
	if err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
