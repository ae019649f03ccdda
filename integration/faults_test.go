package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/migrun/migrun/internal/testdb"
)

// TestHolderKilled: the lock holder is SIGKILLed while its command runs.
// The command dies with it (it must not go on migrating unlocked), the
// database frees the lock, and a waiting runner takes it and succeeds.
func TestHolderKilled(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, url := srv.CreateDatabase(t)
			holderKilled(t, map[string]string{"DATABASE_URL": url})
		})
	}
}

// holderKilled SIGKILLs a lock holder in the middle of its command while a
// waiter waits, and checks that the command dies and the waiter takes over.
func holderKilled(t *testing.T, env map[string]string) {
	t.Helper()
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pid")
	holder := invocation{env: env, args: []string{"run", "--", "sh", "-c",
		fmt.Sprintf("echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 300", pidfile, pidfile, pidfile)}}.start(t)
	var pid int
	waitFor(t, "the holder's command to start", timeoutLong, func() bool {
		data, err := os.ReadFile(pidfile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	})
	ran := filepath.Join(dir, "waiter-ran")
	waiter := invocation{env: env, args: []string{"run", "--lock-timeout=2m", "--", "touch", ran}}.start(t)
	waitFor(t, "the waiter to wait", timeoutLong, func() bool {
		return strings.Contains(waiter.stderr.String(), "waiting")
	})
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.wait(t)
	waitFor(t, "the holder's command to die with it", timeoutLong, func() bool { return dead(pid) })
	res := waiter.wait(t)
	if res.status != 0 {
		t.Fatalf("waiter exited %d:\n%s", res.status, res.stderr)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Errorf("the waiter did not run its command: %v", err)
	}
}

// dead reports whether pid is gone or a zombie nobody has reaped yet.
func dead(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	fields := strings.Fields(rest)
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

// TestServerStoppedWhileWaiting: the server stops while one runner holds the
// lock and another waits, and stays down longer than the connect timeout.
// The waiter gives up with exit 69 instead of hanging and never runs its
// command; the holder finds its lock lost, stops its command and exits 75.
func TestServerStoppedWhileWaiting(t *testing.T) {
	for _, kind := range []string{testdb.KindPostgreSQL, testdb.KindMariaDB} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := testdb.NewPostgres
			if kind == testdb.KindMariaDB {
				srv = testdb.NewMariaDB
			}
			serverStoppedWhileWaiting(t, srv(t), nil)
		})
	}
}

// serverStoppedWhileWaiting plays the scenario on srv, which it stops and
// starts again, with env added to every run's; it returns both runs.
func serverStoppedWhileWaiting(t *testing.T, srv *testdb.Server, env map[string]string) []result {
	t.Helper()
	_, url := srv.CreateDatabase(t)
	env = with(env, "DATABASE_URL", url, "MIGRUN_KEEPALIVE_INTERVAL", "200ms", "MIGRUN_CONNECT_TIMEOUT", "2s")
	holder, release := holdLock(t, env)
	ran := filepath.Join(t.TempDir(), "waiter-ran")
	waiter := invocation{env: env, args: []string{"run", "--lock-timeout=5m", "--", "touch", ran}}.start(t)
	waitFor(t, "the waiter to wait", timeoutLong, func() bool {
		return strings.Contains(waiter.stderr.String(), "waiting")
	})

	srv.Stop(t)
	w := waiter.waitWithin(t, timeoutLong)
	if w.status != 69 {
		t.Errorf("waiter exited %d, want 69:\n%s", w.status, w.stderr)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the waiter ran its command without the lock")
	}
	waitFor(t, "the holder to report the lost lock", timeoutLong, func() bool {
		return strings.Contains(holder.stderr.String(), "lock lost")
	})
	release()
	h := holder.waitWithin(t, timeoutLong)
	assertLockLost(t, h, env["MIGRUN_ON_LOCK_LOST"] == "continue")
	srv.Start(t)
	return []result{h, w}
}

// with returns a copy of env with the given key, value pairs set.
func with(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestLockLostIsReported: the lock holder's database session is ended while
// its command runs; migrun stops the command (or, with
// MIGRUN_ON_LOCK_LOST=continue, lets it finish), and the log, the
// termination log and the Slack notification say so.
func TestLockLostIsReported(t *testing.T) {
	for kind, srv := range servers(t) {
		for _, policy := range []string{"stop", "continue"} {
			t.Run(kind+"/"+policy, func(t *testing.T) {
				t.Parallel()
				rc, hook := newSlackReceiver(t)
				lockBackendKilled(t, srv, map[string]string{"SLACK_WEBHOOK_URL": hook, "MIGRUN_ON_LOCK_LOST": policy})
				if _, raw := rc.all(); !strings.Contains(raw, "Lock lost") {
					t.Errorf("the notification does not carry the lost lock:\n%s", raw)
				}
			})
		}
	}
}
