package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/migrun/migrun/internal/backoff"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/pending"
	"github.com/migrun/migrun/report"
)

// waitMain is `migrun wait`: block until Rails would find no migration to
// run in any of the app's databases, so app Pods start only on a migrated
// schema. It reads files and schema_migrations; it never boots Ruby. When
// it cannot tell what Rails would do, it keeps waiting and says why.
func waitMain(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	cfg, err := parseWait(args, environ, stdout)
	if errors.Is(err, errHelp) {
		return 0
	}
	scrub := scrubberFor(cfg, args, environ)
	if err != nil {
		fmt.Fprintf(stderr, "migrun: %s\n", scrub.String(err.Error()))
		return report.ExitUsage
	}
	log := newLogger(&cfg.LogSettings, stderr, scrub)
	res := waitUntilCurrent(ctx, cfg, environ, log)
	attrs := []any{"waited", res.Duration}
	if res.Err != "" {
		attrs = append(attrs, "err", scrub.String(res.Err))
	}
	log.Log(ctx, severityLevel(res.Severity()), res.Describe(), attrs...)
	return res.ExitStatus()
}

// waitUntilCurrent checks until the gate opens, the wait timeout passes,
// the database cannot be reached, or a signal stops it.
func waitUntilCurrent(ctx context.Context, cfg *waitConfig, environ map[string]string, log *slog.Logger) report.Result {
	started := time.Now()
	res := report.Result{Started: started, ExitCode: -1}
	defer func() { res.Duration = time.Since(started) }()

	gate, err := pending.Open(cfg.gateConfig(cfg.parsed, cfg.Environment, cfg.url, cfg.databases, time.Duration(cfg.ConnectTimeout), environ, log))
	if err != nil {
		res.Outcome, res.Err = report.ConfigError, err.Error()
		return res
	}
	defer gate.Close()

	sigs, stopWatching := watchSignals()
	defer stopWatching()
	timeout := time.Duration(cfg.WaitTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx, release := cancelOnSignal(ctx, sigs)
	defer release()

	poll := backoff.New(100*time.Millisecond, 2*time.Second)
	progress := time.NewTicker(time.Duration(cfg.ProgressInterval))
	defer progress.Stop()
	last := ""
	for {
		v, err := gate.Check(ctx)
		switch {
		case ctx.Err() != nil:
			if sig := signalOf(ctx); sig != 0 {
				res.Outcome, res.Signal = report.Stopped, sig
				return res
			}
			res.Outcome = report.StillPending
			res.Err = fmt.Sprintf("not current after %s: %s", timeout, last)
			return res
		case errors.Is(err, dbconn.ErrUnavailable):
			res.Outcome, res.Err = report.Unreachable, err.Error()
			return res
		case err != nil:
			log.Warn("cannot read applied migrations; retrying", "err", err)
		case v.Current():
			res.Outcome = report.Current
			return res
		default:
			// Say what keeps the gate shut when it changes, and at every
			// progress line.
			if now := describeVerdict(v); now != last {
				logVerdict(log, "waiting", v)
				last = now
			}
		}
		t := time.NewTimer(poll.Next())
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-progress.C:
			if last != "" {
				waited := time.Since(started)
				logVerdict(log, "still waiting", v, "waited", waited, "left", max(timeout-waited, 0))
			}
		}
		t.Stop()
	}
}

// logVerdict says what keeps the gate shut: the migrations pending, or
// why migrun cannot tell.
func logVerdict(log *slog.Logger, what string, v pending.Verdict, attrs ...any) {
	if len(v.Unsure) > 0 {
		log.Warn(what+": migrun cannot tell whether Rails would migrate, so the gate stays shut", append(attrs, "why", strings.Join(v.Unsure, "; "))...)
		return
	}
	log.Info(what+" for migrations", append(attrs, "pending", describePending(v.Pending))...)
}

// describeVerdict is the verdict in a line, to notice when it changes.
func describeVerdict(v pending.Verdict) string {
	if len(v.Unsure) > 0 {
		return "unsure: " + strings.Join(v.Unsure, "; ")
	}
	return describePending(v.Pending)
}

// currentBefore checks, for --skip-if-current, whether Rails would find
// nothing to do; then the command (a Rails boot per Pod, for init
// containers) is not needed. When the check cannot tell, or fails, the
// command runs: it is the authority. when says when the check happens.
func (r *run) currentBefore(ctx context.Context, gate *pending.Gate, when string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.ConnectTimeout))
	defer cancel()
	v, err := gate.Check(ctx)
	switch {
	case err != nil:
		r.log.Warn("cannot check pending migrations; running the command", "when", when, "err", err)
		return false
	case len(v.Unsure) > 0:
		r.log.Warn("migrun cannot tell whether Rails would migrate; running the command", "when", when, "why", strings.Join(v.Unsure, "; "))
		return false
	case len(v.Pending) > 0:
		r.log.Info("migrations pending", "when", when, "pending", describePending(v.Pending))
		return false
	}
	r.log.Info("no migration pending; not running the command", "when", when)
	return true
}

// describePending says which versions are pending, a few per database.
func describePending(migrations []pending.Migration) string {
	byDB := map[string][]string{}
	var order []string
	for _, m := range migrations {
		if _, ok := byDB[m.Database]; !ok {
			order = append(order, m.Database)
		}
		byDB[m.Database] = append(byDB[m.Database], m.Version)
	}
	var parts []string
	for _, name := range order {
		versions := byDB[name]
		shown := versions
		if len(shown) > 5 {
			shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(versions)-5))
		}
		parts = append(parts, name+": "+strings.Join(shown, ", "))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
