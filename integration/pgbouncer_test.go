package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrun/migrun/internal/testdb"
)

// advisoryLocks counts the advisory locks held in database db.
func advisoryLocks(t *testing.T, srv *testdb.Server, db string) int64 {
	t.Helper()
	return srv.QueryInt(t, "", fmt.Sprintf(`SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = '%s')`, db))
}

// TestPgBouncerTransactionMode: through PgBouncer in transaction pooling,
// with fewer server connections than runners, MIGRUN_LOCK_MODE=transaction
// runners exclude each other, all succeed, and release the lock on exit,
// though PgBouncer keeps their server sessions.
func TestPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	bouncer := srv.PgBouncer(t, "transaction", 4)
	db, _ := srv.CreateDatabase(t)
	env := map[string]string{"DATABASE_URL": bouncer.URL(db), "MIGRUN_LOCK_MODE": "transaction"}

	const runners = 10
	marks := filepath.Join(t.TempDir(), "marks")
	results := runConcurrently(t, copies(invocation{env: env, args: markedRun(marks, "0.1")}, runners)...)
	assertSucceeded(t, results)
	assertNoOverlap(t, marks, runners)
	assertNoSecret(t, srv.Password(), results...)
	if n := advisoryLocks(t, srv, db); n != 0 {
		t.Errorf("%d advisory locks still held after every runner exited", n)
	}

	t.Run("holder killed", func(t *testing.T) {
		// PgBouncer cannot pool a server session in the middle of a
		// transaction whose client is gone: it closes it, and PostgreSQL
		// frees the lock.
		holderKilled(t, env)
	})
}

// TestPgBouncerSessionModeRefuses: a session lock through transaction pooling
// would be granted again to any runner whose statement lands on the holder's
// server session (the lock is re-entrant). With one server connection every
// statement lands there: the second runner must refuse with exit 64 and a
// pointer to MIGRUN_LOCK_MODE=transaction, never run its command, and leave
// the holder's lock alone.
func TestPgBouncerSessionModeRefuses(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	bouncer := srv.PgBouncer(t, "transaction", 1)
	db, _ := srv.CreateDatabase(t)
	env := map[string]string{"DATABASE_URL": bouncer.URL(db)}

	holder, release := holdLock(t, env)
	ran := filepath.Join(t.TempDir(), "second-ran")
	second := invocation{env: env, args: []string{"run", "--", "touch", ran}}.run(t)
	if second.status != 64 || !strings.Contains(second.stderr, "MIGRUN_LOCK_MODE=transaction") {
		t.Errorf("second runner exited %d, want 64 and a pointer to MIGRUN_LOCK_MODE=transaction:\n%s", second.status, second.stderr)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the second runner ran its command while the holder held the lock")
	}

	release()
	if res := holder.wait(t); res.status != 0 {
		t.Fatalf("holder exited %d:\n%s", res.status, res.stderr)
	}
	if n := advisoryLocks(t, srv, db); n != 0 {
		t.Errorf("%d advisory locks still held after the holder exited", n)
	}
	assertNoSecret(t, srv.Password(), second)
}

// TestPgBouncerSessionModeNeverOverlaps: session-mode runners through
// transaction pooling with a pool of server sessions. Where their
// statements land is up to PgBouncer, so each runner may run, refuse (64),
// or time out (75) behind a lock a pooled session kept; but no two ever run
// their commands at once.
func TestPgBouncerSessionModeNeverOverlaps(t *testing.T) {
	t.Parallel()
	srv := testdb.Postgres(t)
	bouncer := srv.PgBouncer(t, "transaction", 20)
	db, _ := srv.CreateDatabase(t)
	env := map[string]string{"DATABASE_URL": bouncer.URL(db), "MIGRUN_LOCK_TIMEOUT": "5s"}

	const runners = 10
	marks := filepath.Join(t.TempDir(), "marks")
	ran := 0
	for i, res := range runConcurrently(t, copies(invocation{env: env, args: markedRun(marks, "0.1")}, runners)...) {
		switch res.status {
		case 0:
			ran++
		case 64, 75:
		default:
			t.Errorf("runner %d exited %d, want 0, 64 or 75:\n%s", i, res.status, res.stderr)
		}
		assertNoSecret(t, srv.Password(), res)
	}
	if ran > 0 {
		assertNoOverlap(t, marks, ran)
	} else if _, err := os.Stat(marks); err == nil {
		t.Error("a runner that did not succeed ran its command")
	}
	t.Logf("%d of %d runners ran; the rest refused or timed out", ran, runners)
}
