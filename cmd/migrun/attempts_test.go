package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/report"
	"github.com/migrun/migrun/sessions"
)

// lostLocker is a held Locker whose Lost channel the test closes.
type lostLocker struct {
	lost chan struct{}
	err  error
}

func newLostLocker(lost bool) *lostLocker {
	l := &lostLocker{lost: make(chan struct{}), err: errors.New("lock connection lost: password s3cretpw rejected")}
	if lost {
		close(l.lost)
	}
	return l
}

func (l *lostLocker) Lock(context.Context) error   { return nil }
func (l *lostLocker) Unlock(context.Context) error { return nil }
func (l *lostLocker) Lost() <-chan struct{}        { return l.lost }
func (l *lostLocker) Err() error                   { return l.err }
func (l *lostLocker) String() string               { return "test lock" }

// recordedTimeout is a real Rails output of a migration that failed on the
// DDL lock timeout in a transaction: DecideRetry finds a rerun safe.
var recordedTimeout = filepath.Join("..", "..", "rails", "testdata", "failures", "postgresql-transaction.txt")

// attemptRun is a run whose command is sh -c script, with no database
// sessions to observe.
func attemptRun(t *testing.T, script string) (*run, map[string]string) {
	t.Helper()
	r := testRun(t, io.Discard)
	r.cfg.command = []string{"sh", "-c", script}
	r.scrub = redact.New("s3cretpw")
	r.notifier = newNotifier(&r.cfg.NotifySettings, r.log)
	r.stdout, r.stderr = io.Discard, io.Discard
	env := map[string]string{"DATABASE_URL": "sqlite3:" + filepath.Join(t.TempDir(), "db.sqlite3"), "PATH": os.Getenv("PATH")}
	return r, env
}

// runs is how many times the command wrote to its marker file.
func runs(t *testing.T, marker string) int {
	t.Helper()
	b, err := os.ReadFile(marker)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "x")
}

// TestNoAttemptUnderLostLock: a lock known lost before an attempt starts
// starts no command, even with MIGRUN_ON_LOCK_LOST=continue: before the
// first, the run ends as lock lost (75); before a later one, the previous
// attempt's outcome stands and the loss is recorded. The loss's cause is
// scrubbed.
func TestNoAttemptUnderLostLock(t *testing.T) {
	for _, first := range []bool{true, false} {
		marker := filepath.Join(t.TempDir(), "ran")
		r, env := attemptRun(t, "echo x >> "+marker)
		r.cfg.OnLockLost = "continue"
		if !first {
			r.res.Outcome, r.res.ExitCode = report.Failed, 1
		}
		if _, _, _, _, ok := r.attempt(newLostLocker(true), envList(env), nil, nil, first); ok {
			t.Errorf("first %v: the attempt started under a lost lock", first)
		}
		if n := runs(t, marker); n != 0 {
			t.Errorf("first %v: the command ran %d times under a lost lock", first, n)
		}
		want, status := report.Failed, 1
		if first {
			want, status = report.LockLost, 75
		}
		if r.res.Outcome != want || r.res.ExitStatus() != status {
			t.Errorf("first %v: outcome %q status %d, want %q %d", first, r.res.Outcome, r.res.ExitStatus(), want, status)
		}
		if first && r.res.Err != "lock lost before the command started" {
			t.Errorf("err %q", r.res.Err)
		}
		if !strings.Contains(r.res.Lock.Lost, "connection lost") || strings.Contains(r.res.Lock.Lost, "s3cretpw") {
			t.Errorf("first %v: Lock.Lost %q, want the cause, scrubbed", first, r.res.Lock.Lost)
		}
	}
}

// TestPausePrefersLost: when the pause's timer and the lost lock are both
// ready, the lock's loss wins: no next attempt.
func TestPausePrefersLost(t *testing.T) {
	r, _ := attemptRun(t, "true")
	l := newLostLocker(true)
	for i := range 50 {
		if r.pause(0, l, nil) {
			t.Fatalf("pause %d: true with the lock lost", i)
		}
	}
	if r.res.Lock.Lost == "" {
		t.Error("the loss was not recorded")
	}
}

// TestLockLostDuringAttemptNoRetry: with MIGRUN_ON_LOCK_LOST=continue, a
// lock lost while an attempt runs lets it finish, but one that failed on
// the DDL lock timeout (and could be retried) is not run again.
func TestLockLostDuringAttemptNoRetry(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	r, env := attemptRun(t, "echo x >> "+marker+"; sleep 0.5; cat "+recordedTimeout+"; exit 1")
	r.cfg.OnLockLost = "continue"
	r.cfg.DDLLockTimeout = duration(time.Second)
	l := newLostLocker(false)
	time.AfterFunc(100*time.Millisecond, func() { close(l.lost) })
	r.runAttempts(context.Background(), l, env, nil)
	if n := runs(t, marker); n != 1 {
		t.Errorf("the command ran %d times, want 1", n)
	}
	if r.res.Outcome != report.Failed || r.res.ExitStatus() != 1 || r.res.Lock.Lost == "" {
		t.Errorf("outcome %q status %d lost %q, want failed 1 and the loss", r.res.Outcome, r.res.ExitStatus(), r.res.Lock.Lost)
	}
}

// TestRetryReasonScrubbed: the reason of an attempt that failed on the DDL
// lock timeout quotes the migration's statements; a secret in them is
// masked there too (it reaches Slack, the termination log and the result
// document).
func TestRetryReasonScrubbed(t *testing.T) {
	r, env := attemptRun(t, "sed s/nickname/s3cretpw/g "+filepath.Join("..", "..", "rails", "testdata", "failures", "postgresql-outside-first.txt")+"; exit 1")
	r.res.Lock.Acquired = true
	r.runAttempts(context.Background(), newLostLocker(false), env, nil)
	if len(r.res.Attempts) == 0 {
		t.Fatal("no attempt recorded")
	}
	reason := r.res.Attempts[0].Reason
	if !strings.HasPrefix(reason, "lock timeout") || !strings.Contains(reason, "add_column(:accounts, :"+redact.Mask) {
		t.Errorf("reason %q, want the lock timeout's, quoting the statement scrubbed", reason)
	}
	for _, text := range []string{reason, r.res.Summary(), r.res.Output} {
		if strings.Contains(text, "s3cretpw") {
			t.Errorf("a secret got through:\n%s", text)
		}
	}
}

// TestNoAttemptAfterStopSignal: a stop signal that came while an attempt
// ran (forwarded to the command) is not forgotten: when the command then
// fails on the DDL lock timeout, nothing is run again, and the run ends as
// the command did.
func TestNoAttemptAfterStopSignal(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	r, env := attemptRun(t, "echo x >> "+marker+"; trap 'cat "+recordedTimeout+"; exit 1' TERM; sleep 5 & wait")
	r.cfg.DDLLockTimeout = duration(time.Second)
	sigs := make(chan os.Signal, 1)
	time.AfterFunc(300*time.Millisecond, func() { sigs <- syscall.SIGTERM })
	r.runAttempts(context.Background(), newLostLocker(false), env, sigs)
	if n := runs(t, marker); n != 1 {
		t.Errorf("the command ran %d times, want 1", n)
	}
	if r.res.Outcome != report.Failed || r.res.ExitStatus() != 1 {
		t.Errorf("outcome %q status %d, want failed 1", r.res.Outcome, r.res.ExitStatus())
	}
	if len(r.res.Attempts) != 1 || !strings.HasSuffix(r.res.Attempts[0].Reason, "; not retried: migrun was told to stop (SIGTERM)") {
		t.Errorf("attempts %+v", r.res.Attempts)
	}
}

// TestBlockerWatch: the progress line names who blocks the command now
// (nobody once the blocker is gone), the attempt's reason the last
// blocker seen.
func TestBlockerWatch(t *testing.T) {
	w := &blockerWatch{done: make(chan struct{}), ended: make(chan struct{})}
	close(w.ended)
	scrub := redact.New("s3cretpw")
	blocker := sessions.Blocker{PID: 42, User: "app", State: "idle in transaction", Query: "UPDATE users SET pw = 's3cretpw'"}
	steps := []struct {
		poll    []sessions.Blocker
		wantNow bool
	}{
		{nil, false},
		{[]sessions.Blocker{blocker}, true},
		{nil, false}, // the blocker is gone
	}
	for i, step := range steps {
		w.saw(step.poll, scrub)
		if now := w.now(); (len(now) > 0) != step.wantNow {
			t.Errorf("poll %d: now %q", i, now)
		}
	}
	last := w.stop()
	if len(last) != 1 || !strings.Contains(last[0], "42") || strings.Contains(last[0], "s3cretpw") {
		t.Errorf("stop() = %q, want the last blocker seen, scrubbed", last)
	}
}

// TestNotRetriedReason: a lock timeout DecideRetry finds safe to rerun
// that is not rerun says why: no MIGRUN_DDL_LOCK_TIMEOUT (the role's own
// lock_timeout), or the retries used up.
func TestNotRetriedReason(t *testing.T) {
	tests := []struct {
		ddl     time.Duration
		retries int
		runs    int
		want    string // the last attempt's reason ends so
	}{
		{0, 3, 1, "; not retried: MIGRUN_DDL_LOCK_TIMEOUT is not set"},
		{time.Second, 0, 1, "; not retried: MIGRUN_RETRIES=0 used up"},
		{time.Second, 1, 2, "; not retried: MIGRUN_RETRIES=1 used up"},
	}
	for _, tt := range tests {
		marker := filepath.Join(t.TempDir(), "ran")
		r, env := attemptRun(t, "echo x >> "+marker+"; cat "+recordedTimeout+"; exit 1")
		r.cfg.DDLLockTimeout, r.cfg.Retries = duration(tt.ddl), count(tt.retries)
		r.runAttempts(context.Background(), newLostLocker(false), env, nil)
		if n := runs(t, marker); n != tt.runs || len(r.res.Attempts) != tt.runs {
			t.Errorf("ddl %s retries %d: ran %d times, %d attempts, want %d", tt.ddl, tt.retries, n, len(r.res.Attempts), tt.runs)
			continue
		}
		for i, a := range r.res.Attempts {
			if !a.LockTimeout || !strings.Contains(a.Reason, "ran in a transaction, which the lock timeout rolled back whole") {
				t.Errorf("ddl %s retries %d: attempt %d: %q", tt.ddl, tt.retries, i+1, a.Reason)
			}
			if last := i == len(r.res.Attempts)-1; last != strings.HasSuffix(a.Reason, tt.want) {
				t.Errorf("ddl %s retries %d: attempt %d: %q, want the last to end %q", tt.ddl, tt.retries, i+1, a.Reason, tt.want)
			}
		}
	}
}

// TestLaterAttemptNotStarted: when a later attempt cannot start, the run
// ends as that failure says (here 127, the command gone), and the earlier
// attempts' output is kept.
func TestLaterAttemptNotStarted(t *testing.T) {
	script := filepath.Join(t.TempDir(), "migrate")
	body := "#!/bin/sh\necho first attempt output\ncat " + recordedTimeout + "\nrm \"$0\"\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	r, env := attemptRun(t, "")
	r.cfg.command = []string{script}
	r.cfg.DDLLockTimeout, r.cfg.Retries = duration(time.Second), 1
	r.runAttempts(context.Background(), newLostLocker(false), env, nil)
	if r.res.Outcome != report.NotFound || r.res.ExitStatus() != 127 {
		t.Errorf("outcome %q status %d, want not found 127", r.res.Outcome, r.res.ExitStatus())
	}
	if !strings.Contains(r.res.Output, "first attempt output") || len(r.res.Attempts) != 1 {
		t.Errorf("%d attempts, output:\n%s", len(r.res.Attempts), r.res.Output)
	}
}

// TestBlockerPollTimeout: a poll for blockers (whose first also connects)
// gets at least the observer's statement timeout, however often it polls.
func TestBlockerPollTimeout(t *testing.T) {
	for every, want := range map[time.Duration]time.Duration{
		250 * time.Millisecond: sessions.DefaultStatementTimeout,
		time.Second:            sessions.DefaultStatementTimeout,
		30 * time.Second:       30 * time.Second,
	} {
		if got := blockerPollTimeout(every); got != want {
			t.Errorf("blockerPollTimeout(%s) = %s, want %s", every, got, want)
		}
	}
}
