package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
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
