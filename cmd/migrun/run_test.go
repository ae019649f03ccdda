package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/report"
	"github.com/migrun/migrun/runner"
)

// waitingLocker is a Locker whose Lock waits until its context ends and
// whose Unlock records the context it was given.
type waitingLocker struct {
	unlockDeadline bool
	unlockErr      error
}

func (l *waitingLocker) Lock(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func (l *waitingLocker) Unlock(ctx context.Context) error {
	_, l.unlockDeadline = ctx.Deadline()
	return l.unlockErr
}

func (l *waitingLocker) Lost() <-chan struct{} { return nil }
func (l *waitingLocker) Err() error            { return nil }
func (l *waitingLocker) String() string        { return "test lock" }

func testRun(t *testing.T, logs io.Writer) *run {
	t.Helper()
	cfg, err := parseRun(nil, map[string]string{"DATABASE_URL": pgURL}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return &run{cfg: cfg, log: slog.New(slog.NewTextHandler(logs, nil)), scrub: redact.New(), res: &report.Result{}}
}

// TestStoppedWhileWaitingReleasesBounded: a signal while waiting for the
// lock gives 128+N, and the release that follows is bounded and its
// failure logged, not dropped.
func TestStoppedWhileWaitingReleasesBounded(t *testing.T) {
	var logs bytes.Buffer
	r := testRun(t, &logs)
	l := &waitingLocker{unlockErr: errors.New("connection reset")}
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGINT
	if r.acquire(context.Background(), l, sigs) {
		t.Fatal("acquire succeeded after a signal")
	}
	if got := r.res.ExitStatus(); got != 130 || r.res.Outcome != report.Stopped {
		t.Errorf("outcome %q status %d, want stopped, 130", r.res.Outcome, got)
	}
	if !l.unlockDeadline {
		t.Error("Unlock after a signal had no deadline")
	}
	if !strings.Contains(logs.String(), "releasing the lock failed") || !strings.Contains(logs.String(), "connection reset") {
		t.Errorf("the failed release was not logged:\n%s", logs.String())
	}
}

// TestRecord: how the command ended decides the outcome; a lost exit
// status is migrun's own failure (70), never the command's 0 or 255.
func TestRecord(t *testing.T) {
	tests := []struct {
		out        runner.Result
		stopped    bool
		want       report.Outcome
		wantStatus int
	}{
		{runner.Result{ExitCode: 0}, false, report.Succeeded, 0},
		{runner.Result{ExitCode: 2}, false, report.Failed, 2},
		{runner.Result{ExitCode: -1, Signal: syscall.SIGKILL}, false, report.Killed, 137},
		{runner.Result{ExitCode: -1, Err: errors.New("reap pid 7: no child processes")}, false, report.InternalError, 70},
		{runner.Result{ExitCode: -1, Signal: syscall.SIGTERM}, true, report.LockLost, 75},
		{runner.Result{ExitCode: 0}, true, report.LockLost, 75},
	}
	for _, tt := range tests {
		r := testRun(t, io.Discard)
		r.res.Lock.CommandStopped = tt.stopped
		r.record(tt.out, time.Now())
		if r.res.Outcome != tt.want || r.res.ExitStatus() != tt.wantStatus {
			t.Errorf("record(%+v, stopped %v): %q %d, want %q %d", tt.out, tt.stopped, r.res.Outcome, r.res.ExitStatus(), tt.want, tt.wantStatus)
		}
	}
}

// TestRubySyncFile: the Ruby sync file, found or written in the
// background while migrun starts, is in the command's RUBYOPT and in place
// when the command starts. The shared one stays for the next run (and is
// the only file left); a file of the run's own (the shared name taken) is
// gone when migrun returns, also when no command ran. With
// MIGRUN_RUBY_SYNC=false there is none.
func TestRubySyncFile(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where rails.SyncOutput writes it
	dir := t.TempDir()
	env := map[string]string{
		"DATABASE_URL": "sqlite3:" + filepath.Join(dir, "db.sqlite3"),
		"PATH":         os.Getenv("PATH"),
		"RUBYOPT":      "-W0",
	}
	leftover := func() []string {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(tmp, "migrun-sync-*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// The command shows its RUBYOPT, then the file that it names.
	show := `echo "RUBYOPT=$RUBYOPT"; f=${RUBYOPT##*-r}; if [ "$f" != "$RUBYOPT" ]; then cat "$f"; fi`
	res := runMainWith(t, env, "run", "--", "sh", "-c", show)
	if res.status != 0 {
		t.Fatalf("status %d\nstdout: %s\nstderr: %s", res.status, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "RUBYOPT=-W0 -r"+tmp+"/migrun-sync-") || !strings.Contains(res.stdout, "$stdout.sync = true") {
		t.Errorf("the command did not find the sync file in its RUBYOPT (kept after the app's own):\n%s", res.stdout)
	}
	shared := leftover()
	if len(shared) != 1 || !strings.Contains(res.stdout, "-r"+shared[0]+"\n") {
		t.Fatalf("after a run, want only the shared sync file the command loaded, found %v\n%s", shared, res.stdout)
	}
	// The shared name taken (by a directory here): the run writes its
	// own file, and removes it.
	if err := os.Remove(shared[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(shared[0], "taken"), 0o700); err != nil {
		t.Fatal(err)
	}
	res = runMainWith(t, env, "run", "--", "sh", "-c", show)
	if res.status != 0 || strings.Contains(res.stdout, "-r"+shared[0]) || !strings.Contains(res.stdout, "$stdout.sync = true") {
		t.Errorf("shared name taken: status %d, want a file of the run's own in RUBYOPT:\n%s", res.status, res.stdout)
	}
	if m := leftover(); !slices.Equal(m, shared) {
		t.Errorf("the run's own sync file is still there after migrun returned: %v", m)
	}

	off := maps.Clone(env)
	off["MIGRUN_RUBY_SYNC"] = "false"
	res = runMainWith(t, off, "run", "--", "sh", "-c", show)
	if res.status != 0 || !strings.Contains(res.stdout, "RUBYOPT=-W0\n") || strings.Contains(res.stdout, "sync") {
		t.Errorf("MIGRUN_RUBY_SYNC=false: status %d, want RUBYOPT left as it was:\n%s", res.status, res.stdout)
	}

	// No command runs (the lock is held elsewhere): the file goes too.
	holdLock(t, env["DATABASE_URL"])
	timeout := maps.Clone(env)
	timeout["MIGRUN_LOCK_TIMEOUT"] = "10ms"
	res = runMainWith(t, timeout, "run", "--", "sh", "-c", show)
	if res.status != report.ExitTempFail || strings.Contains(res.stdout, "RUBYOPT") {
		t.Errorf("with the lock held elsewhere: status %d, want %d and no command run\nstdout: %s\nstderr: %s", res.status, report.ExitTempFail, res.stdout, res.stderr)
	}
	if m := leftover(); !slices.Equal(m, shared) {
		t.Errorf("the run's own sync file is still there after a run that started no command: %v", m)
	}
}
