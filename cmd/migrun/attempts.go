package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/backoff"
	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
	"github.com/migrun/migrun/runner"
	"github.com/migrun/migrun/sessions"
)

// runAttempts runs the command under the held lock: once, or, with a DDL
// lock timeout set, again after an attempt that failed on that timeout,
// when rails.DecideRetry finds a rerun safe, at most MIGRUN_RETRIES more
// times, after a backoff. Any other failure is never retried. The lock is
// held throughout; the exit status is the last attempt's.
func (r *run) runAttempts(ctx context.Context, locker lock.Locker, env map[string]string, sigs <-chan os.Signal) {
	obs := r.observe(env)
	if obs != nil {
		defer obs.Close()
	}
	var baseline []string
	baselineOK := false
	retries := 0
	if r.cfg.DDLLockTimeout > 0 {
		retries = int(r.cfg.Retries)
		if obs != nil {
			var err error
			baseline, err = obs.InvalidIndexes(ctx)
			baselineOK = err == nil
		}
	}
	wait := backoff.New(2*time.Second, 30*time.Second)
	var outputs []string
	for attempt := 1; ; attempt++ {
		out, started, blockers, stop, ok := r.attempt(locker, envList(env), sigs, obs, attempt == 1)
		if !ok {
			break
		}
		r.record(out, started)
		outputs = append(outputs, r.res.Output)
		if r.res.Outcome != report.Failed {
			break
		}
		// The decision's reason quotes the output, and goes to Slack, the
		// termination log and the result document: it reads the scrubbed one.
		f := rails.Failure{Output: r.scrub.String(out.Output), MigrationsPaths: r.migrationsPaths()}
		if obs != nil && baselineOK {
			if after, err := obs.InvalidIndexes(ctx); err == nil {
				f.InvalidIndexes, f.InvalidIndexesChecked = newOnes(after, baseline), true
			}
		}
		d := rails.DecideRetry(f)
		if !d.LockTimeout {
			break
		}
		last := &r.res.Attempts[len(r.res.Attempts)-1]
		last.LockTimeout, last.Reason = true, "lock timeout"
		if len(blockers) > 0 {
			last.Reason += ", blocked by " + strings.Join(blockers, "; ")
		}
		last.Reason += ": " + d.Reason
		last.Reason = r.scrub.String(last.Reason)
		r.log.Warn("the command failed on the DDL lock timeout", "attempt", attempt, "blocked_by", strings.Join(blockers, "; "), "decision", d.Reason)
		if !d.Retry {
			break
		}
		// A rerun would be safe; say why there is none.
		notRetried := ""
		switch {
		case r.cfg.DDLLockTimeout == 0: // the role's own lock_timeout
			notRetried = "MIGRUN_DDL_LOCK_TIMEOUT is not set"
		case attempt > retries:
			notRetried = fmt.Sprintf("MIGRUN_RETRIES=%d used up", r.cfg.Retries)
		case stop != nil:
			// The signal went to the command; another attempt would only
			// be killed mid-statement when the orchestrator's grace ends.
			notRetried = "migrun was told to stop (" + signalName(stop) + ")"
		}
		if notRetried != "" {
			last.Reason += "; not retried: " + notRetried
			r.log.Warn("not running the command again: "+notRetried, "attempt", attempt)
			break
		}
		pause := wait.Next()
		r.log.Info("running the command again after a pause", "attempt", attempt+1, "of", retries+1, "pause", pause)
		if !r.pause(pause, locker, sigs) {
			break
		}
	}
	switch {
	case len(outputs) > 1:
		r.res.Output = joinAttempts(outputs, r.res.Attempts)
	case len(outputs) == 1:
		// A later attempt that could not start put the empty text there.
		r.res.Output = outputs[0]
	}
}

// attempt starts the command once and supervises it; ok is false when it
// could not be started (recorded). blockers are the last sessions seen
// blocking it; stop is the first signal migrun was sent meanwhile (passed
// on to the command), nil if none.
func (r *run) attempt(locker lock.Locker, env []string, sigs <-chan os.Signal, obs *sessions.Observer, first bool) (out runner.Result, started time.Time, blockers []string, stop os.Signal, ok bool) {
	// A lock known lost is never run under, whatever MIGRUN_ON_LOCK_LOST
	// says: continue lets a running command finish, it starts none.
	select {
	case <-locker.Lost():
		r.lostBeforeStart(locker, first)
		return out, started, nil, nil, false
	default:
	}
	r.log.Info("running command", "command", strings.Join(r.cfg.command, " "))
	started = time.Now()
	proc, err := runner.Start(r.cfg.command, env, runner.Options{
		Stdout:         r.stdout,
		Stderr:         r.stderr,
		SeparateStderr: bool(r.cfg.SeparateStderr),
		ReapOrphans:    os.Getpid() == 1,
		Logger:         r.log,
	})
	if err != nil {
		r.res.Output = r.cfg.EmptyOutput
		switch {
		case errors.Is(err, runner.ErrNotFound):
			r.fail(report.NotFound, err)
		case errors.Is(err, runner.ErrNotExecutable):
			r.fail(report.NotExecutable, err)
		default: // pipes or fork failed: migrun's own trouble
			r.fail(report.InternalError, err)
		}
		return out, started, nil, nil, false
	}
	if first {
		snapshot := *r.res
		snapshot.Attempts = []report.Attempt{{Started: started, ExitCode: -1}}
		r.notifier.commandStarted(context.Background(), snapshot)
		defer r.notifier.commandEnded()
	}
	watch := r.watchBlockers(obs)
	stops := watchStops(sigs)
	out = supervise(proc, supervision{
		sigs:     stops.ch,
		lost:     locker.Lost(),
		onLost:   func() { r.lockLost(locker, proc) },
		every:    time.Duration(r.cfg.ProgressInterval),
		progress: func() { r.progress(proc, started, watch.now()) },
		log:      r.log,
	})
	return out, started, watch.stop(), stops.stop(), true
}

// stopWatch passes the signals migrun gets while an attempt runs on to
// supervise (which forwards them to the command) and remembers the first,
// also one that came as the command ended: after it no attempt starts.
type stopWatch struct {
	ch    chan os.Signal
	first os.Signal // read after stop
	done  chan struct{}
	ended chan struct{}
}

func watchStops(sigs <-chan os.Signal) *stopWatch {
	w := &stopWatch{ch: make(chan os.Signal, 1), done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		for {
			select {
			case <-w.done:
				return
			case sig := <-sigs:
				if w.first == nil {
					w.first = sig
				}
				select {
				case w.ch <- sig:
				case <-w.done:
					return
				}
			}
		}
	}()
	return w
}

// stop ends the relaying and returns the first signal, nil if none.
func (w *stopWatch) stop() os.Signal {
	close(w.done)
	<-w.ended
	return w.first
}

func signalName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		return report.SignalName(int(s))
	}
	return sig.String()
}

// lostBeforeStart records a lock lost before an attempt started: before
// the first, the run's outcome is the lost lock; before a later one, the
// previous attempt's outcome stands and the loss is recorded with it.
func (r *run) lostBeforeStart(locker lock.Locker, first bool) {
	r.res.Lock.Lost = r.scrub.String(errString(locker.Err()))
	if first {
		r.res.Outcome = report.LockLost
		r.res.Err = "lock lost before the command started"
		r.res.Output = r.cfg.EmptyOutput
		r.log.Error("lock lost before the command started; not running it", "lock", locker.String(), "err", r.res.Lock.Lost)
		return
	}
	r.log.Error("lock lost between attempts; not running the command again", "lock", locker.String(), "err", r.res.Lock.Lost)
}

// pause waits d between attempts, holding the lock; false when migrun was
// told to stop (the signal is recorded) or the lock was lost meanwhile
// (also when it is found lost just as the pause ends).
func (r *run) pause(d time.Duration, locker lock.Locker, sigs <-chan os.Signal) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		select {
		case <-locker.Lost():
			r.res.Lock.Lost = r.scrub.String(errString(locker.Err()))
			return false
		default:
		}
		return true
	case sig := <-sigs:
		r.res.Outcome, r.res.Signal = report.Stopped, int(sig.(syscall.Signal))
		r.res.Err = fmt.Sprintf("stopped by %s between attempts", report.SignalName(r.res.Signal))
		return false
	case <-locker.Lost():
		r.res.Lock.Lost = r.scrub.String(errString(locker.Err()))
		return false
	}
}

// record fills in the result from how an attempt ended, started then:
// the outcome is the last attempt's, the migrations every attempt's.
func (r *run) record(out runner.Result, started time.Time) {
	r.res.Outcome, r.res.ExitCode, r.res.Signal = commandOutcome(out)
	switch {
	case r.res.Lock.CommandStopped:
		r.res.Outcome = report.LockLost
	case out.Err != nil:
		r.fail(report.InternalError, out.Err)
	}
	r.res.Output = r.scrub.String(out.Output)
	r.res.Omitted += out.Omitted
	done, unfinished := rails.ParseRun(r.res.Output)
	r.res.Migrations = append(r.res.Migrations, done...)
	r.res.FailedMigration = nil
	if r.res.Outcome != report.Succeeded {
		r.res.FailedMigration = unfinished
	}
	r.res.Attempts = append(r.res.Attempts, report.Attempt{Started: started, Duration: out.Duration,
		ExitCode: out.ExitCode, Signal: int(out.Signal), Reason: r.res.Describe()})
	if strings.TrimSpace(r.res.Output) == "" {
		r.res.Output = r.cfg.EmptyOutput
	}
}

// joinAttempts is the captured output of several attempts, each under a
// line saying which it was and how it ended.
func joinAttempts(outputs []string, attempts []report.Attempt) string {
	var b strings.Builder
	for i, out := range outputs {
		fmt.Fprintf(&b, "[migrun: attempt %d of %d: %s]\n", i+1, len(outputs), attempts[i].Reason)
		b.WriteString(out)
		if !strings.HasSuffix(out, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// progress is the line that says, while the command runs, how long it has
// run, which migration Rails last started and, where the database shows
// it, who blocks the migration's session.
func (r *run) progress(proc *runner.Process, started time.Time, blockers []string) {
	attrs := []any{"running", time.Since(started)}
	if _, current := rails.ParseRun(proc.Output()); current != nil {
		attrs = append(attrs, "migration", current.Version+" "+current.Name)
	}
	if len(blockers) > 0 {
		attrs = append(attrs, "blocked_by", strings.Join(blockers, "; "))
	}
	r.log.Info("command running", attrs...)
}

// observe watches the command's own database sessions (who blocks them,
// invalid indexes), on PostgreSQL and MySQL/MariaDB; nil otherwise.
func (r *run) observe(env map[string]string) *sessions.Observer {
	u := r.cfg.url
	if raw := env["DATABASE_URL"]; raw != "" {
		if cu, err := dburl.Parse(raw); err == nil {
			u = cu
		}
	}
	if u == nil || (u.Adapter != dburl.PostgreSQL && !u.IsMySQL()) {
		return nil
	}
	return sessions.Observe(u, sessions.CommandAppName(u, env), sessions.ObserverOptions{})
}

// migrationsPaths are where the app's migrations are, as the gate reads
// the app, for finding a failed migration's file.
func (r *run) migrationsPaths() []string {
	var paths []string
	for _, d := range r.cfg.databases {
		paths = append(paths, d.Paths...)
	}
	if len(paths) == 0 {
		paths = []string{"db/migrate"}
	}
	return paths
}

func newOnes(now, before []string) []string {
	var out []string
	for _, n := range now {
		if !slices.Contains(before, n) {
			out = append(out, n)
		}
	}
	return out
}

// blockerWatch polls who blocks the command's sessions while it runs:
// often with a DDL lock timeout (so the blockers of a statement that then
// times out are known), else at each progress line.
type blockerWatch struct {
	mu      sync.Mutex
	current []string // what the last answered poll saw; nil when nothing blocks
	latest  []string // the last non-empty answer, for the attempt's reason
	done    chan struct{}
	ended   chan struct{}
}

func (r *run) watchBlockers(obs *sessions.Observer) *blockerWatch {
	w := &blockerWatch{done: make(chan struct{}), ended: make(chan struct{})}
	if obs == nil {
		close(w.ended)
		return w
	}
	every := time.Duration(r.cfg.ProgressInterval)
	if ddl := time.Duration(r.cfg.DDLLockTimeout); ddl > 0 {
		every = min(every, max(ddl/2, 250*time.Millisecond))
	}
	// A poll is cut short when the watch stops: the attempt's end waits
	// for no slow answer.
	base, cancelAll := context.WithCancel(context.Background())
	go func() {
		<-w.done
		cancelAll()
	}()
	go func() {
		defer close(w.ended)
		t := time.NewTicker(every)
		defer t.Stop()
		said := false
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(base, blockerPollTimeout(every))
			bs, err := obs.Blockers(ctx)
			cancel()
			if !said {
				if limits := obs.Limits(); len(limits) > 0 {
					r.log.Info("the database shows migrun only part of who blocks the migration", "limits", strings.Join(limits, "; "))
					said = true
				}
			}
			if err != nil {
				continue
			}
			w.saw(bs, r.scrub)
		}
	}()
	return w
}

// blockerPollTimeout bounds one poll of who blocks the command: polls are
// often (every), but the first also connects, so never shorter than the
// observer's own statement timeout.
func blockerPollTimeout(every time.Duration) time.Duration {
	return max(every, sessions.DefaultStatementTimeout)
}

// saw records a poll's answer, scrubbed.
func (w *blockerWatch) saw(bs []sessions.Blocker, scrub *redact.Scrubber) {
	var seen []string
	for _, b := range bs {
		seen = append(seen, scrub.String(b.String()))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.current = seen
	if len(seen) > 0 {
		w.latest = seen
	}
}

// now is what the last answered poll saw: who blocks the command now, for
// the progress line; nil when nothing does.
func (w *blockerWatch) now() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// stop ends the polling and returns the last non-empty answer: who blocked
// the statement that may have timed out.
func (w *blockerWatch) stop() []string {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.ended
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}
