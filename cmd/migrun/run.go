package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/pending"
	"github.com/migrun/migrun/report"
	"github.com/migrun/migrun/runner"
	"github.com/migrun/migrun/sessions"
)

// unlockTimeout bounds releasing the lock; if it runs out the database
// still frees the lock when the connection closes.
const unlockTimeout = 10 * time.Second

// runMain is `migrun run`: configure, lock, run, report, exit.
func runMain(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	started := time.Now()
	// A closed stdout must not kill migrun (and with it the migration),
	// from its first log line on: main gives duplicates of descriptors 1
	// and 2, on which a closed pipe is an error, not SIGPIPE; anything
	// else gets a SIGPIPE handler.
	runner.CatchSIGPIPEFor(stdout, stderr)
	// The signals the run watches, and the one-time work of starting a
	// command, are set up in the background while the configuration is
	// read and the lock taken; the signals are in place before migrun
	// waits for the lock or starts the command (signalWatch).
	signals := watchSignalsAsync()
	defer signals.end()
	runner.Prepare()
	cfg, err := parseRun(args, environ, stdout)
	if errors.Is(err, errHelp) {
		return 0
	}
	scrub := scrubberFor(cfg, args, environ)
	res := &report.Result{
		Command:     cfg.command,
		ExitCode:    -1,
		Environment: cfg.Environment,
		Host:        hostname(environ),
		App:         cfg.App,
		Revision:    cfg.Revision,
		Namespace:   environ["POD_NAMESPACE"],
		Started:     started,
		Lock:        report.Lock{Mode: string(cfg.LockMode), Name: cfg.LockName, Timeout: time.Duration(cfg.LockTimeout)},
	}
	res.Link = report.LinkTemplate(cfg.LinkTemplate).Expand(*res)
	if err != nil {
		// Nothing to forward signals to: they end migrun again at once.
		signals.close()
		msg := scrub.String(err.Error())
		fmt.Fprintf(stderr, "migrun: %s\n", msg)
		res.Outcome, res.Err = report.ConfigError, msg
		res.Duration = time.Since(started)
		// Slack is told when its own settings are usable.
		if cfg.NotifySettings.usable() {
			newNotifier(&cfg.NotifySettings, newLogger(&cfg.LogSettings, stderr, scrub)).finish(ctx, *res)
		}
		return res.ExitStatus()
	}

	log := newLogger(&cfg.LogSettings, stderr, scrub)
	r := &run{cfg: cfg, log: log, scrub: scrub, notifier: newNotifier(&cfg.NotifySettings, log),
		environ: environ, stdout: stdout, stderr: stderr, res: res, signals: signals}
	if cfg.RubySync {
		// Found or written while migrun starts and takes the lock; a file
		// of the run's own is removed before migrun exits, whichever way
		// the run ends.
		r.rubySync = startRubySync(environ["RUBYOPT"])
		defer r.rubySync.wait()
	}
	if why := cfg.lockElsewhere(environ); why != "" {
		r.log.Warn(why)
	}
	r.execute(ctx)
	res.Duration = time.Since(started)
	res.Err = scrub.String(res.Err)

	r.logOutcome()
	r.writeTerminationLog()
	r.notifier.finish(ctx, *res)
	return res.ExitStatus()
}

// run is one `migrun run` in progress.
type run struct {
	cfg            *runConfig
	log            *slog.Logger
	scrub          *redact.Scrubber
	notifier       *notifier
	environ        map[string]string
	stdout, stderr io.Writer
	res            *report.Result
	rubySync       *rubySync // nil with MIGRUN_RUBY_SYNC=false
	signals        *signalWatch
}

// execute takes the lock, runs the command and releases the lock,
// recording the outcome in r.res.
func (r *run) execute(ctx context.Context) {
	// Once the lock is released the run no longer forwards signals: they
	// end migrun again (stopped in the background while the result is
	// reported; see signalWatch.end).
	defer r.signals.stopAsync()

	opts := r.cfg.lockOptions(r.identity(), r.log)
	opts.BeforeWait = r.signals.wait
	locker, err := lock.New(r.cfg.url, opts)
	if err != nil {
		r.fail(report.ConfigError, err)
		return
	}
	// When the command uses the lock's own PostgreSQL database, the lock's
	// connection probes startup options for it: one connection fewer per
	// run, which on a small database host competes with the lock's for
	// the CPU. The other databases are probed in the background.
	urls := r.commandPostgresURLs()
	prober, lockProbes := locker.(lock.OptionsProber)
	if lockProbes {
		i := slices.IndexFunc(urls, func(u *dburl.URL) bool { return u.Redacted() == r.cfg.url.Redacted() })
		if lockProbes = i >= 0; lockProbes {
			prober.ProbeStartupOptions()
			urls = slices.Delete(urls, i, i+1)
		}
	}
	// The command's environment (and the Ruby sync file, written since
	// migrun started) is ready before the lock, and the routes to its
	// database sessions are probed while the lock is taken: when runners
	// queue, neither is part of the hand-off.
	base := r.commandEnv()
	// From here on (the gate, the lock, the command) a signal stops the
	// run, once the signals are watched; a wait for the lock, and the
	// command, wait for that (signalWatch).
	sigs := r.signals.channel()

	// With --skip-if-current, a gate that is sure nothing is pending skips
	// the command before the lock, so Pods started together do not queue
	// to learn that there is nothing to do; otherwise it asks again under
	// the lock, where another runner may just have migrated.
	var gate *pending.Gate
	if r.cfg.SkipIfCurrent {
		if gate, err = pending.Open(r.cfg.gateConfig(r.cfg.parsed, r.cfg.Environment, r.cfg.url, r.cfg.databases, time.Duration(r.cfg.ConnectTimeout), r.environ, r.log)); err != nil {
			r.fail(report.ConfigError, err)
			return
		}
		defer gate.Close()
		if r.currentBefore(ctx, gate, "before the lock") {
			r.skip()
			return
		}
	}
	probed := r.probeSessions(ctx, urls)
	if !r.acquire(ctx, locker, sigs) {
		return
	}
	defer r.release(ctx, locker)
	if gate != nil && r.currentBefore(ctx, gate, "under the lock") {
		r.skip()
		return
	}
	answers := <-probed
	if lockProbes {
		if own, ok := prober.OptionsProbed(); ok {
			answers = append(answers, sessions.FromProbe(dbconn.PostgresAddr(r.cfg.url), own))
		} else {
			// Not expected after a successful Lock; ask the usual way.
			answers = append(answers, <-r.probeSessions(ctx, []*dburl.URL{r.cfg.url})...)
		}
	}
	env, notes := sessions.Apply(base, r.sessionSettings(), combineProbes(answers))
	for _, note := range notes {
		r.log.Warn(note)
	}
	r.addRubySync(env)
	r.signals.wait()
	r.runAttempts(ctx, locker, env, sigs)
	// No attempt follows: a sync file of the run's own goes while the lock is
	// released and the result reported.
	r.rubySync.cleanUp()
}

// addRubySync adds the Ruby sync file to the command's RUBYOPT, when
// asked (MIGRUN_RUBY_SYNC) and it could be written.
func (r *run) addRubySync(env map[string]string) {
	opt, ok, err := r.rubySync.rubyopt()
	if err != nil {
		r.log.Warn("cannot make Ruby output unbuffered; its output may arrive late", "err", err)
	}
	if ok {
		env["RUBYOPT"] = opt
	}
}

// sessionSettings are what the command's own database sessions are told:
// the same dead-client bound as the lock's, and the DDL lock timeout.
func (r *run) sessionSettings() sessions.Settings {
	return sessions.Settings{
		DeadClientTimeout: time.Duration(r.cfg.DeadHolderTimeout),
		LockTimeout:       time.Duration(r.cfg.DDLLockTimeout),
	}
}

// probeSessions finds out, in the background, whether startup options
// (PGOPTIONS) reach each PostgreSQL server the command will use: a pooler
// may refuse them (the command's connections would fail) or ignore them.
// It answers for each of urls, stopping at the first that does not take
// them (combineProbes).
func (r *run) probeSessions(ctx context.Context, urls []*dburl.URL) <-chan []sessions.Postgres {
	out := make(chan []sessions.Postgres, 1)
	if len(urls) == 0 {
		out <- nil
		return out
	}
	go func() {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.ConnectTimeout))
		defer cancel()
		var answers []sessions.Postgres
		for _, u := range urls {
			// The server may still be starting (the lock waits for it too):
			// ask again within the connect timeout.
			var pg sessions.Postgres
			// Quietly: the lock's own connection says when the database
			// is not reachable.
			quiet := slog.New(slog.DiscardHandler)
			err := dbconn.Retry(ctx, time.Duration(r.cfg.ConnectTimeout), quiet, dbconn.PostgresAddr(u), func(ctx context.Context) error {
				var err error
				pg, err = sessions.Probe(ctx, u)
				return err
			})
			if err != nil {
				pg = sessions.Postgres{Why: "could not ask " + u.Redacted() + ": " + r.scrub.String(err.Error())}
			}
			answers = append(answers, pg)
			if !pg.OptionsReach {
				break
			}
		}
		out <- answers
	}()
	return out
}

// combineProbes is what the command's sessions are told from the probes'
// answers: PGOPTIONS reaches every connection of the command, so it is
// set only when every server takes it, with the settings the oldest has;
// nothing when there is no PostgreSQL database.
func combineProbes(answers []sessions.Postgres) sessions.Postgres {
	if len(answers) == 0 {
		return sessions.Postgres{}
	}
	result := sessions.Postgres{OptionsReach: true}
	for _, pg := range answers {
		if !pg.OptionsReach {
			return pg
		}
		if result.Version == 0 || pg.Version < result.Version {
			result.Version = pg.Version
		}
	}
	return result
}

// commandPostgresURLs are the PostgreSQL databases the command connects
// to as far as migrun can see: DATABASE_URL and <NAME>_DATABASE_URL, else
// the database migrun was given.
func (r *run) commandPostgresURLs() []*dburl.URL {
	var urls []*dburl.URL
	seen := map[string]bool{}
	add := func(u *dburl.URL) {
		if u != nil && u.Adapter == dburl.PostgreSQL && !seen[u.Redacted()] {
			seen[u.Redacted()] = true
			urls = append(urls, u)
		}
	}
	for k, v := range r.environ {
		if strings.HasSuffix(k, "DATABASE_URL") && k != "MIGRUN_DATABASE_URL" {
			if u, err := dburl.Parse(v); err == nil {
				add(u)
			}
		}
	}
	if len(urls) == 0 {
		add(r.cfg.url)
	}
	return urls
}

// skip records that the command was not needed.
func (r *run) skip() {
	r.res.Outcome = report.Skipped
	r.res.ExitCode = 0
	r.res.Output = r.cfg.EmptyOutput
}

// acquire waits for the lock, giving up at the lock timeout or when migrun
// is told to stop. It reports whether the lock is held.
func (r *run) acquire(ctx context.Context, locker lock.Locker, sigs <-chan os.Signal) bool {
	if r.cfg.LockMode != "none" {
		r.log.Info("acquiring lock", "lock", locker.String(), "timeout", time.Duration(r.cfg.LockTimeout))
	}
	lockCtx, cancel := context.WithTimeoutCause(ctx, time.Duration(r.cfg.LockTimeout), lock.ErrTimeout)
	defer cancel()
	lockCtx, release := cancelOnSignal(lockCtx, sigs)
	start := time.Now()
	err := locker.Lock(lockCtx)
	release()
	r.res.Lock.Waited = time.Since(start)

	if sig := signalOf(lockCtx); sig != 0 {
		// Told to stop while waiting (or just as the lock came): release
		// whatever was taken and exit as the signal asks.
		r.release(ctx, locker)
		r.res.Outcome, r.res.Signal = report.Stopped, sig
		r.res.Err = fmt.Sprintf("stopped by %s while waiting for the lock", report.SignalName(sig))
		return false
	}
	switch {
	case err == nil:
		r.res.Lock.Acquired = true
		if r.cfg.LockMode != "none" {
			r.log.Info("lock acquired", "lock", locker.String(), "waited", r.res.Lock.Waited)
		}
		return true
	case errors.Is(err, lock.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		// The holder as the waiter last saw it goes to the log, the
		// termination log and Slack with the error.
		why := fmt.Sprintf("lock not acquired in %s", time.Duration(r.cfg.LockTimeout))
		var te *lock.TimeoutError
		if errors.As(err, &te) && te.Holder != "" {
			why += "; held by " + te.Holder
		}
		r.fail(report.LockTimeout, errors.New(why))
	case errors.Is(err, lock.ErrUnsupported):
		r.fail(report.ConfigError, err)
	default:
		r.fail(report.Unreachable, err)
	}
	return false
}

// release unlocks, bounded: if it cannot, the database frees the lock when
// the connection closes, and the log says so.
func (r *run) release(ctx context.Context, locker lock.Locker) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	if err := locker.Unlock(uctx); err != nil {
		r.log.Warn("releasing the lock failed; the database frees it when the connection closes", "lock", locker.String(), "err", err)
		return
	}
	if r.res.Lock.Acquired && r.cfg.LockMode != "none" {
		r.log.Info("lock released", "lock", locker.String())
	}
}

// supervision is what watching a running command involves besides
// waiting for it; every part is optional.
type supervision struct {
	sigs     <-chan os.Signal // forwarded to the command
	lost     <-chan struct{}  // onLost is called once when it closes
	onLost   func()
	every    time.Duration // progress is called this often
	progress func()
	log      *slog.Logger
}

// supervise waits for the command, forwarding signals to it and reporting
// as s says.
func supervise(proc *runner.Process, s supervision) runner.Result {
	log := s.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := make(chan runner.Result, 1)
	go func() { done <- proc.Wait() }()
	var tick <-chan time.Time
	if s.progress != nil && s.every > 0 {
		t := time.NewTicker(s.every)
		defer t.Stop()
		tick = t.C
	}
	lost := s.lost
	for {
		select {
		case sig := <-s.sigs:
			log.Info("forwarding signal to the command", "signal", sig.String())
			if err := proc.Signal(sig.(syscall.Signal)); err != nil && !errors.Is(err, os.ErrProcessDone) {
				log.Warn("forwarding signal failed", "signal", sig.String(), "err", err)
			}
		case <-lost:
			lost = nil
			s.onLost()
		case <-tick:
			s.progress()
		case out := <-done:
			return out
		}
	}
}

// lockLost reacts to the lock being lost while the command runs: by
// default the command is stopped before another runner can take the lock.
//
// The lock says by when the command must have stopped: a lock the server
// says is gone (or whose connection is) may be taken by another runner at
// once, so the command is killed at once; a lock not confirmed for long is
// still safe until shortly before the server could free it, so the command
// gets SIGTERM and MIGRUN_STOP_TIMEOUT, but never past that moment, before
// SIGKILL.
func (r *run) lockLost(locker lock.Locker, proc *runner.Process) {
	err := locker.Err()
	why := errString(err)
	r.res.Lock.Lost = r.scrub.String(why)
	if r.cfg.OnLockLost == "continue" {
		r.log.Error("lock lost while the command runs; letting it finish (MIGRUN_ON_LOCK_LOST=continue): another runner may start migrating", "lock", locker.String(), "err", why)
		return
	}
	r.res.Lock.CommandStopped = true
	grace := time.Duration(r.cfg.StopTimeout)
	var lost *lock.LostError
	if errors.As(err, &lost) {
		grace = min(grace, time.Until(lost.StopBy))
	}
	if grace <= 0 {
		r.log.Error("lock lost while the command runs; killing the command before another runner can take the lock", "lock", locker.String(), "err", why)
		if err := proc.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			r.log.Warn("killing the command failed", "err", err)
		}
		return
	}
	r.log.Error("lock not confirmed while the command runs; stopping the command before the database could free the lock", "lock", locker.String(), "err", why, "grace", grace)
	go proc.Stop(grace)
}

// identity names this run in the database: PostgreSQL's application_name
// and MySQL's program_name show it, so an operator sees whose session holds
// the lock (issue 13).
func (r *run) identity() string {
	return fmt.Sprintf("migrun %s %d", r.res.Host, os.Getpid())
}

// commandOutcome is how the command ended: the outcome, its exit code and
// the signal that killed it.
func commandOutcome(out runner.Result) (report.Outcome, int, int) {
	outcome := report.Failed
	switch {
	case out.Err != nil:
		outcome = report.InternalError
	case out.Signal != 0:
		outcome = report.Killed
	case out.ExitCode == 0:
		outcome = report.Succeeded
	}
	return outcome, out.ExitCode, int(out.Signal)
}

// fail records a failure outside the command.
func (r *run) fail(outcome report.Outcome, err error) {
	r.res.Outcome = outcome
	r.res.Err = r.scrub.String(err.Error())
}

// commandEnv is the command's environment: migrun's own, without the
// secrets only migrun needs (the Slack webhook and token). The RUBYOPT
// that makes Ruby write its output at once is added when the command is
// about to start (addRubySync).
func (r *run) commandEnv() map[string]string {
	environ := withoutSecrets(r.environ, r.cfg.parsed.settings)
	// The migration's own sessions say whose they are too, where the
	// client reads it from the environment (libpq: PGAPPNAME); the app's
	// own name is kept.
	if environ["PGAPPNAME"] == "" {
		environ["PGAPPNAME"] = truncateName(fmt.Sprintf("migrun command %s %d", r.res.Host, os.Getpid()))
	}
	return environ
}

func (r *run) logOutcome() {
	res := r.res
	attrs := []any{"status", res.ExitStatus(), "duration", res.Duration}
	if len(res.Migrations) > 0 {
		versions := make([]string, len(res.Migrations))
		for i, m := range res.Migrations {
			versions[i] = m.Version + " " + m.Name
		}
		attrs = append(attrs, "migrations", strings.Join(versions, ", "))
	}
	if res.Err != "" {
		attrs = append(attrs, "err", res.Err)
	}
	if res.Lock.Lost != "" {
		attrs = append(attrs, "lock_lost", res.Lock.Lost)
	}
	r.log.Log(context.Background(), severityLevel(res.Severity()), res.Headline(), attrs...)
}

// writeTerminationLog leaves the summary where the kubelet reads it. The
// default path is written only when it exists (the kubelet creates it), so
// a local run does not fail for want of /dev/termination-log; a path that
// was given is created.
func (r *run) writeTerminationLog() {
	path := r.cfg.TerminationLog
	flags := os.O_WRONLY | os.O_TRUNC
	if r.cfg.terminationLogSet {
		flags |= os.O_CREATE
	} else if _, err := os.Stat(path); err != nil {
		return
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err == nil {
		_, err = io.WriteString(f, r.res.Summary())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		r.log.Warn("cannot write the termination log", "path", path, "err", err)
	}
}

// severityLevel is the log level of a result of that severity.
func severityLevel(s report.Severity) slog.Level {
	switch s {
	case report.OK:
		return slog.LevelInfo
	case report.Warning:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// hostname names where the run happened: the Pod name when the Downward
// API provides it, else the host name (which is the Pod name in a Pod).
func hostname(environ map[string]string) string {
	for _, k := range []string{"POD_NAME", "HOSTNAME"} {
		if v := environ[k]; v != "" {
			return v
		}
	}
	h, _ := os.Hostname()
	return h
}

func errString(err error) string {
	if err == nil {
		return "unknown cause"
	}
	return err.Error()
}
