package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestExitStatus: migrun exits with what the command did, and with its own
// documented statuses when it could not run it.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sqlite := "sqlite3:" + filepath.Join(dir, "db.sqlite3")
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		status int
		term   string // in the termination log
		says   string // in stderr: the one line names the setting and the fix
	}{
		{name: "success", args: []string{"--", "true"}, status: 0, term: "succeeded"},
		{name: "failure", args: []string{"--", "sh", "-c", "echo broke >&2; exit 3"}, status: 3, term: "failed (exit 3)"},
		{name: "killed by a signal", args: []string{"--", "sh", "-c", "kill -KILL $$"}, status: 137, term: "killed by SIGKILL"},
		{name: "not found", args: []string{"--", "no-such-command-migrun"}, status: 127, term: "command not found"},
		{name: "not executable", args: []string{"--", notExec}, status: 126, term: "command not executable"},
		{name: "directory", args: []string{"--", dir}, status: 126},
		{name: "usage error", args: []string{"--no-such-flag"}, status: 64},
		{name: "bad URL", env: map[string]string{"DATABASE_URL": "mongodb://h/db"}, args: []string{"--", "true"}, status: 64},
		{name: "unknown subcommand", args: []string{"migrate"}, status: 64},
		{name: "URL without a database", env: map[string]string{"DATABASE_URL": "postgres://u:BadInputPw1@h"}, args: []string{"--", "true"}, status: 64},
		{name: "negative timeout", args: []string{"--lock-timeout=-5s", "--", "true"}, status: 64},
		{name: "bad duration", env: map[string]string{"MIGRUN_CONNECT_TIMEOUT": "forever"}, args: []string{"--", "true"}, status: 64},
		{name: "unknown notify policy", env: map[string]string{"MIGRUN_NOTIFY": "sometimes"}, args: []string{"--", "true"}, status: 64},
		{name: "malformed webhook", env: map[string]string{"SLACK_WEBHOOK_URL": "hooks.slack.com/services/BadInputHook"}, args: []string{"--", "true"}, status: 64},
		{name: "empty command", args: []string{"--", ""}, status: 64},
		{name: "no lock", env: map[string]string{"DATABASE_URL": "", "MIGRUN_LOCK_MODE": "none"}, args: []string{"--", "true"}, status: 0},
		// Issue 15's rows: each a one-line error naming the setting and the fix.
		{name: "a misspelt sslmode", env: map[string]string{"DATABASE_URL": "postgres://u:BadInputPw2@127.0.0.1:1/db?sslmode=disabled"}, args: []string{"--", "true"}, status: 64,
			says: `DATABASE_URL: invalid database URL: sslmode="disabled" is not one of disable, allow, prefer, require, verify-ca, verify-full`},
		{name: "an unknown URL parameter", env: map[string]string{"DATABASE_URL": "postgres://u:BadInputPw3@127.0.0.1:1/db?foo=bar"}, args: []string{"--", "true"}, status: 64,
			says: `unknown query parameter "foo"`},
		{name: "mysql://", env: map[string]string{"DATABASE_URL": "mysql://u:BadInputPw4@127.0.0.1:1/db"}, args: []string{"--", "true"}, status: 64,
			says: "Rails has no mysql adapter: write mysql2://"},
		{name: "a sqlite3 URL with a host", env: map[string]string{"DATABASE_URL": "sqlite3://db/x.sqlite3"}, args: []string{"--", "true"}, status: 64,
			says: "write sqlite3:db/x.sqlite3"},
		{name: "a duration flag without a unit", args: []string{"--lock-timeout", "5", "--", "true"}, status: 64,
			says: `--lock-timeout="5": a duration needs a unit, e.g. 5s or 5m`},
		{name: "a duration variable without a unit", env: map[string]string{"MIGRUN_LOCK_TIMEOUT": "5"}, args: []string{"--", "true"}, status: 64,
			says: `MIGRUN_LOCK_TIMEOUT="5": a duration needs a unit, e.g. 5s or 5m`},
		{name: "an upper-case log format", env: map[string]string{"MIGRUN_LOG_FORMAT": "JSON"}, args: []string{"--", "true"}, status: 0},
		{name: "a plain http webhook", env: map[string]string{"SLACK_WEBHOOK_URL": "http://hooks.slack.com/services/BadInputHook2"}, args: []string{"--", "true"}, status: 64,
			says: "SLACK_WEBHOOK_URL: the Slack webhook URL is malformed: it must start with https:// (http:// only to localhost)"},
		{name: "migrun alone", args: []string{}, status: 64, says: "Usage:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"DATABASE_URL": sqlite}
			for k, v := range tt.env {
				env[k] = v
			}
			res := invocation{env: env, args: tt.args}.run(t)
			if res.status != tt.status {
				t.Fatalf("exit status %d, want %d:\n%s", res.status, tt.status, res.stderr)
			}
			if !strings.Contains(res.termination, tt.term) {
				t.Errorf("termination log lacks %q:\n%s", tt.term, res.termination)
			}
			if tt.status == 64 && tt.name != "migrun alone" && strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
				t.Errorf("usage error is not one line:\n%s", res.stderr)
			}
			if !strings.Contains(res.stderr, tt.says) {
				t.Errorf("stderr does not say %q:\n%s", tt.says, res.stderr)
			}
			if strings.Contains(res.all(), "BadInput") {
				t.Errorf("a secret leaked:\n%s", res.all())
			}
			// Nothing is left locked: the next runner gets the lock at once.
			if next := (invocation{env: map[string]string{"DATABASE_URL": sqlite, "MIGRUN_LOCK_TIMEOUT": "5s"}, args: []string{"--", "true"}}).run(t); next.status != 0 {
				t.Errorf("lock left held: next runner exited %d:\n%s", next.status, next.stderr)
			}
		})
	}
}

// TestOutput: output streams through and is captured, stdout and stderr
// in the order written (one pipe), or live apart with
// MIGRUN_SEPARATE_STDERR; empty output becomes the configured text.
func TestOutput(t *testing.T) {
	sqlite := "sqlite3:" + filepath.Join(t.TempDir(), "db.sqlite3")
	script := []string{"--", "sh", "-c", "echo one; echo two >&2; echo three"}
	res := invocation{env: map[string]string{"DATABASE_URL": sqlite}, args: script}.run(t)
	if res.status != 0 || res.stdout != "one\ntwo\nthree\n" || strings.Contains(res.stderr, "two\n") {
		t.Fatalf("status %d stdout %q stderr %q", res.status, res.stdout, res.stderr)
	}
	if !strings.Contains(res.termination, "output (tail):\none\ntwo\nthree\n") {
		t.Errorf("termination log:\n%s", res.termination)
	}
	apart := invocation{env: map[string]string{"DATABASE_URL": sqlite, "MIGRUN_SEPARATE_STDERR": "true"}, args: script}.run(t)
	if apart.status != 0 || apart.stdout != "one\nthree\n" || !strings.Contains(apart.stderr, "two\n") {
		t.Fatalf("separate stderr: status %d stdout %q stderr %q", apart.status, apart.stdout, apart.stderr)
	}

	empty := invocation{env: map[string]string{"DATABASE_URL": sqlite, "MIGRUN_EMPTY_OUTPUT": "Nothing to do"}, args: []string{"--", "sh", "-c", "echo '  '"}}.run(t)
	if empty.status != 0 || !strings.Contains(empty.termination, "output (tail):\nNothing to do") {
		t.Errorf("empty output: status %d, termination log:\n%s", empty.status, empty.termination)
	}
}

// TestSignalForwarded: SIGTERM to migrun reaches the command; migrun exits
// 143 when the command dies of it and releases the lock.
func TestSignalForwarded(t *testing.T) {
	dir := t.TempDir()
	sqlite := "sqlite3:" + filepath.Join(dir, "db.sqlite3")
	ready := filepath.Join(dir, "ready")
	rc, hook := newSlackReceiver(t)
	r := invocation{env: map[string]string{"DATABASE_URL": sqlite, "SLACK_WEBHOOK_URL": hook}, args: []string{"--", "sh", "-c", "touch " + ready + "; exec sleep 60"}}.start(t)
	waitFor(t, "the command to start", timeoutLong, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
	// "touch" ran, but sh may not have exec'd sleep yet; either dies of SIGTERM.
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res := r.wait(t)
	if res.status != 143 || !strings.Contains(res.termination, "killed by SIGTERM") {
		t.Fatalf("status %d, termination log:\n%s\n%s", res.status, res.termination, res.stderr)
	}
	if _, raw := rc.all(); !strings.Contains(raw, "SIGTERM") {
		t.Errorf("the notification does not say SIGTERM:\n%s", raw)
	}
	// The lock was released: the next runner gets it at once.
	next := invocation{env: map[string]string{"DATABASE_URL": sqlite, "MIGRUN_LOCK_TIMEOUT": "5s"}, args: []string{"--", "true"}}.run(t)
	if next.status != 0 {
		t.Errorf("next runner exited %d:\n%s", next.status, next.stderr)
	}
}

// TestProgressLines: while the command runs, a line at
// MIGRUN_PROGRESS_INTERVAL says how long it has run and which migration
// Rails last started.
func TestProgressLines(t *testing.T) {
	sqlite := "sqlite3:" + filepath.Join(t.TempDir(), "db.sqlite3")
	res := invocation{env: map[string]string{"DATABASE_URL": sqlite, "MIGRUN_PROGRESS_INTERVAL": "300ms"},
		args: []string{"--", "sh", "-c", "echo '== 20240101000000 CreateUsers: migrating ====='; sleep 2"}}.run(t)
	if res.status != 0 || !strings.Contains(res.stderr, `msg="command running"`) || !strings.Contains(res.stderr, `migration="20240101000000 CreateUsers"`) {
		t.Fatalf("exit %d, no progress line naming the migration:\n%s", res.status, res.stderr)
	}
}

// TestUnreachableLogsWithBackoff: a wrong port logs once with the retry
// budget and the setting that sets it, then with backoff, not once per
// attempt; exit 69 at the budget.
func TestUnreachableLogsWithBackoff(t *testing.T) {
	url := fmt.Sprintf("postgres://u:BadInputPw9@127.0.0.1:%d/db", closedPort(t))
	res := invocation{env: map[string]string{"DATABASE_URL": url, "MIGRUN_CONNECT_TIMEOUT": "8s"}, args: []string{"run", "--", "true"}}.run(t)
	if res.status != 69 {
		t.Fatalf("exit %d, want 69:\n%s", res.status, res.stderr)
	}
	lines := strings.Count(res.stderr, "not reachable")
	first := res.stderr[:strings.Index(res.stderr, "not reachable")+200]
	if !strings.Contains(first, "MIGRUN_CONNECT_TIMEOUT") || !strings.Contains(first, "for=") {
		t.Errorf("the first retry line says neither the budget nor the setting:\n%s", res.stderr)
	}
	if lines > 5 {
		t.Errorf("%d retry lines in 8 s, want a few:\n%s", lines, res.stderr)
	}
	assertNoSecret(t, "BadInputPw9", res)
}
