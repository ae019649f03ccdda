package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/notify"
	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
	"github.com/migrun/migrun/runner"
)

// forwarded are the signals passed on to the command, as an orchestrator
// or a terminal sends them to migrun.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}

// unlockTimeout bounds releasing the lock; if it runs out the database
// still frees the lock when the connection closes.
const unlockTimeout = 10 * time.Second

// runCommand is `migrun run`: configure, lock, run, report, exit.
func runCommand(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	started := time.Now()
	cfg, err := parseRun(args, environ, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		scrub := redact.New(rawSecrets(args, environ)...)
		msg := scrub.String(err.Error())
		fmt.Fprintf(stderr, "migrun: %s\n", msg)
		notifyConfigError(ctx, environ, scrub, msg, started, stderr)
		return exitUsage
	}

	scrub := redact.New(cfg.secrets()...)
	logger := newLogger(cfg, stderr, scrub)

	// A closed stdout must not kill migrun (and with it the migration):
	// with SIGPIPE notified, writes fail with EPIPE instead. The command
	// still gets the default disposition, since exec resets caught signals.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	res := report.Result{
		Command:     cfg.Command,
		ExitCode:    -1,
		Environment: cfg.Environment,
		Host:        hostname(environ),
		App:         cfg.App,
		Revision:    cfg.Revision,
		Started:     started,
		Lock:        report.Lock{Mode: string(cfg.Mode), Name: cfg.LockName, Timeout: cfg.LockTimeout},
	}
	r := &run{cfg: cfg, log: logger, scrub: scrub, sigs: sigs, environ: environ, stdout: stdout, stderr: stderr, res: &res}
	res.ExitStatus = r.execute(ctx)
	res.Duration = time.Since(started)
	res.Err = scrub.String(res.Err)

	r.logOutcome()
	r.writeTerminationLog()
	r.notify(ctx)
	return res.ExitStatus
}

// run is one `migrun run` in progress.
type run struct {
	cfg            *config
	log            *slog.Logger
	scrub          *redact.Scrubber
	sigs           chan os.Signal
	environ        map[string]string
	stdout, stderr io.Writer
	res            *report.Result
}

// execute takes the lock, runs the command and releases the lock, filling
// in r.res; it returns the exit status.
func (r *run) execute(ctx context.Context) int {
	locker, err := lock.New(r.cfg.URL, lock.Options{
		Name:           r.cfg.LockName,
		Mode:           r.cfg.Mode,
		ConnectTimeout: r.cfg.ConnectTimeout,
		KeepAlive:      r.cfg.KeepAlive,
		Logger:         r.log,
	})
	if err != nil {
		return r.fail(report.ConfigError, exitUsage, err)
	}
	// The command's environment (and the Ruby sync file) is ready before
	// the lock: when runners queue, it is not part of the hand-off.
	env, cleanup := r.commandEnv()
	defer cleanup()
	if status, ok := r.acquire(ctx, locker); !ok {
		return status
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if err := locker.Unlock(uctx); err != nil {
			r.log.Warn("releasing the lock failed; the database frees it when the connection closes", "lock", locker.String(), "err", err)
			return
		}
		if r.cfg.Mode != lock.ModeNone {
			r.log.Info("lock released", "lock", locker.String())
		}
	}()
	if r.cfg.SkipIfCurrent && r.nothingPending(ctx) {
		r.res.Outcome = report.Skipped
		r.res.ExitCode = 0
		r.res.Output = r.cfg.EmptyOutput
		return 0
	}
	return r.runCommand(locker, env)
}

// nothingPending checks, under the lock, whether every database already
// has every migration the image carries; then the command (a Rails boot
// per Pod, for init containers) is not needed. When the check cannot
// tell, the command runs: it is the authority.
func (r *run) nothingPending(ctx context.Context) bool {
	cs, err := newCheckers(r.cfg.Targets, r.cfg.ConnectTimeout, r.log)
	if err != nil {
		r.log.Warn("cannot check pending migrations; running the command", "err", err)
		return false
	}
	defer cs.close()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	missing, err := cs.pending(ctx, r.cfg.Targets)
	if err != nil {
		r.log.Warn("cannot check pending migrations; running the command", "err", err)
		return false
	}
	if len(missing) > 0 {
		r.log.Info("migrations pending", "pending", describePending(missing))
		return false
	}
	r.log.Info("no migration pending; not running the command")
	return true
}

// acquire waits for the lock, giving up at the lock timeout or when migrun
// is told to stop. It returns false with the exit status when it failed.
func (r *run) acquire(ctx context.Context, locker lock.Locker) (int, bool) {
	if r.cfg.Mode != lock.ModeNone {
		r.log.Info("acquiring lock", "lock", locker.String(), "timeout", r.cfg.LockTimeout)
	}
	lockCtx, cancel := context.WithTimeoutCause(ctx, r.cfg.LockTimeout, lock.ErrTimeout)
	defer cancel()

	var stoppedBy os.Signal
	watched := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case sig := <-r.sigs:
			stoppedBy = sig
			cancel()
		case <-done:
		}
	}()
	start := time.Now()
	err := locker.Lock(lockCtx)
	close(done)
	<-watched
	r.res.Lock.Waited = time.Since(start)

	switch {
	case stoppedBy != nil:
		_ = locker.Unlock(context.WithoutCancel(ctx))
		sig := stoppedBy.(syscall.Signal)
		r.res.Outcome = report.Signaled
		r.res.Signal = unix.SignalName(sig)
		r.res.Err = fmt.Sprintf("stopped by %s while waiting for the lock", r.res.Signal)
		return 128 + int(sig), false
	case err == nil:
		r.res.Lock.Acquired = true
		if r.cfg.Mode != lock.ModeNone {
			r.log.Info("lock acquired", "lock", locker.String(), "waited", r.res.Lock.Waited.Round(time.Millisecond))
		}
		return 0, true
	case errors.Is(err, lock.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		return r.fail(report.LockTimeout, exitTempFail, fmt.Errorf("lock not acquired in %s: %w", r.cfg.LockTimeout, err)), false
	case errors.Is(err, lock.ErrUnavailable):
		return r.fail(report.Unreachable, exitUnavailable, err), false
	case errors.Is(err, lock.ErrUnsupported):
		return r.fail(report.ConfigError, exitUsage, err), false
	default:
		return r.fail(report.Unreachable, exitUnavailable, err), false
	}
}

// runCommand runs the command under the held lock, forwarding signals, and
// records how it ended.
func (r *run) runCommand(locker lock.Locker, env []string) int {
	r.log.Info("running command", "command", strings.Join(r.cfg.Command, " "))
	proc, err := runner.Start(r.cfg.Command, env, runner.Options{
		Stdout:      r.stdout,
		Stderr:      r.stderr,
		ReapOrphans: os.Getpid() == 1,
	})
	if err != nil {
		r.res.Output = r.cfg.EmptyOutput
		switch {
		case errors.Is(err, runner.ErrNotFound):
			return r.fail(report.NotStarted, exitNotFound, err)
		case errors.Is(err, runner.ErrNotExecutable):
			return r.fail(report.NotStarted, exitNotExecutable, err)
		default: // pipes or fork failed: migrun's own trouble
			return r.fail(report.NotStarted, exitSoftware, err)
		}
	}

	done := make(chan runner.Result, 1)
	go func() { done <- proc.Wait() }()
	lost := locker.Lost()
	var out runner.Result
wait:
	for {
		select {
		case sig := <-r.sigs:
			r.log.Info("forwarding signal to the command", "signal", sig.String())
			if err := proc.Signal(sig.(syscall.Signal)); err != nil && !errors.Is(err, os.ErrProcessDone) {
				r.log.Warn("forwarding signal failed", "signal", sig.String(), "err", err)
			}
		case <-lost:
			lost = nil
			r.res.Lock.Lost = r.scrub.String(errString(locker.Err()))
			r.log.Error("lock connection lost while the command runs; another runner may start migrating", "lock", locker.String(), "err", locker.Err())
		case out = <-done:
			break wait
		}
	}
	r.record(out)
	return out.Status()
}

// record fills in the result from how the command ended.
func (r *run) record(out runner.Result) {
	r.res.ExitCode = out.ExitCode
	switch {
	case out.Signal != 0:
		r.res.Outcome = report.Signaled
		r.res.Signal = unix.SignalName(out.Signal)
	case out.ExitCode == 0:
		r.res.Outcome = report.Succeeded
	default:
		r.res.Outcome = report.Failed
	}
	r.res.Output = r.scrub.String(out.Output)
	r.res.Omitted = out.Omitted
	r.res.Migrations = rails.ParseMigrations(out.Output)
	if strings.TrimSpace(r.res.Output) == "" {
		r.res.Output = r.cfg.EmptyOutput
	}
}

// fail records a failure that happened outside the command.
func (r *run) fail(outcome report.Outcome, status int, err error) int {
	r.res.Outcome = outcome
	r.res.Err = r.scrub.String(err.Error())
	return status
}

// commandEnv is the command's environment: migrun's own, plus, when asked,
// a RUBYOPT that makes Ruby write its output at once. Ruby block-buffers
// stdout on a pipe, which would hold Rails' migration lines back until it
// exits: no live logs, and stderr reordered ahead of stdout.
func (r *run) commandEnv() ([]string, func()) {
	environ := r.environ
	cleanup := func() {}
	if r.cfg.RubySync {
		if path, err := writeRubySync(); err != nil {
			r.log.Warn("cannot make Ruby output unbuffered; its output may arrive late", "err", err)
		} else {
			environ = maps.Clone(environ)
			environ["RUBYOPT"] = strings.TrimSpace(environ["RUBYOPT"] + " -r" + path)
			cleanup = func() { os.Remove(path) }
		}
	}
	env := make([]string, 0, len(environ))
	for k, v := range environ {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env, cleanup
}

const rubySync = "# Written by migrun: unbuffered output, so migration logs are live and in order.\n$stdout.sync = true\n$stderr.sync = true\n"

func writeRubySync() (string, error) {
	f, err := os.CreateTemp("", "migrun-sync-*.rb")
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(f.Name(), " \t") { // RUBYOPT splits on white space
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("temporary directory %q contains white space", filepath.Dir(f.Name()))
	}
	if _, err := f.WriteString(rubySync); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

func (r *run) logOutcome() {
	res := r.res
	attrs := []any{"status", res.ExitStatus, "duration", res.Duration.Round(time.Millisecond)}
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
	level := slog.LevelInfo
	if !res.OK() {
		level = slog.LevelError
	}
	r.log.Log(context.Background(), level, "migration "+res.Describe(), attrs...)
}

// writeTerminationLog leaves the summary where the kubelet reads it. The
// default path is written only when it exists (the kubelet creates it), so
// a local run does not fail for want of /dev/termination-log.
func (r *run) writeTerminationLog() {
	path := r.cfg.TerminationLog
	flags := os.O_WRONLY | os.O_TRUNC
	if r.cfg.TerminationLogExplicit {
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

// notify tells Slack, when configured and the policy wants it. A failed
// notification is logged and never changes the exit status.
func (r *run) notify(ctx context.Context) {
	opts := r.cfg.notifyOptions()
	if !opts.Enabled() || !r.cfg.Policy.Wants(*r.res) {
		return
	}
	opts.Logger = r.log
	n, err := notify.New(opts)
	if err == nil {
		err = n.Notify(ctx, *r.res)
	}
	if err != nil {
		r.log.Warn("slack notification failed", "err", err)
		return
	}
	r.log.Info("slack notified")
}

// notifyConfigError reports a configuration error to Slack when the Slack
// part of the configuration, read from the environment alone, is usable.
func notifyConfigError(ctx context.Context, environ map[string]string, scrub *redact.Scrubber, msg string, started time.Time, stderr io.Writer) {
	environ = withFallbacks(environ)
	opts := notify.Options{
		WebhookURL: environ["SLACK_WEBHOOK_URL"],
		BotToken:   environ["SLACK_BOT_TOKEN"],
		Channel:    environ["SLACK_CHANNEL"],
		APIURL:     environ["SLACK_API_URL"],
		Username:   environ["SLACK_USERNAME"],
		IconEmoji:  environ["SLACK_ICON_EMOJI"],
		// The configuration did not parse: its log format may be the very
		// error, so JSON only when that is what was asked for.
		Logger: newLogger(&config{LogFormat: environ["MIGRUN_LOG_FORMAT"], LogLevel: "info"}, stderr, scrub),
	}
	policy, err := notify.ParsePolicy(environ["MIGRUN_NOTIFY"])
	if environ["MIGRUN_NOTIFY"] == "" {
		policy, err = notify.ParsePolicy("always")
	}
	res := report.Result{
		Outcome: report.ConfigError, ExitStatus: exitUsage, ExitCode: -1, Err: msg,
		Environment: environ["MIGRUN_ENVIRONMENT"], Host: hostname(environ),
		App: environ["MIGRUN_APP"], Revision: environ["MIGRUN_REVISION"],
		Started: started, Duration: time.Since(started),
	}
	if res.Environment == "" {
		res.Environment = "development"
	}
	if err != nil || !opts.Enabled() || opts.Validate() != nil || !policy.Wants(res) {
		return
	}
	if n, err := notify.New(opts); err == nil {
		if err := n.Notify(ctx, res); err != nil {
			opts.Logger.Warn("slack notification failed", "err", err)
		}
	}
}

// rawSecrets finds what may be secret before the configuration parsed:
// passwords in any database URL given, the webhook URL and the bot token.
func rawSecrets(args []string, environ map[string]string) []string {
	environ = withFallbacks(environ)
	secrets := []string{environ["SLACK_WEBHOOK_URL"], environ["SLACK_BOT_TOKEN"]}
	candidates := []string{environ["MIGRUN_DATABASE_URL"], environ["DATABASE_URL"]}
	for i, a := range args {
		if a == "--" {
			break
		}
		if _, v, ok := strings.Cut(a, "="); ok {
			candidates = append(candidates, v)
		} else if i+1 < len(args) {
			candidates = append(candidates, args[i+1])
		}
	}
	for _, c := range candidates {
		secrets = append(secrets, passwordOf(c)...)
		if strings.Contains(c, "hooks.slack.com") || strings.HasPrefix(c, "xox") {
			secrets = append(secrets, c)
		}
	}
	return secrets
}

// passwordOf extracts a URL's password, as written and decoded, even when
// the URL is otherwise malformed: it looks between "//" and the last "@".
func passwordOf(raw string) []string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return nil
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok {
		return nil
	}
	if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
		return []string{pw, dec}
	}
	return []string{pw}
}

func newLogger(cfg *config, w io.Writer, scrub *redact.Scrubber) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(scrub.Handler(h)).With("app", "migrun")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
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
