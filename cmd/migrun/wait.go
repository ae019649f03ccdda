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

	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/pending"
	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
)

// waitMain is `migrun wait`: block until every database has every
// migration the image carries, so app Pods start only on a migrated
// schema. It reads files and schema_migrations; it never boots Ruby.
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
	res := waitUntilCurrent(ctx, cfg, log)
	attrs := []any{"waited", res.Duration}
	if res.Err != "" {
		attrs = append(attrs, "err", scrub.String(res.Err))
	}
	log.Log(ctx, severityLevel(res.Severity()), res.Describe(), attrs...)
	return res.ExitStatus()
}

// waitUntilCurrent checks until nothing is pending, the wait timeout
// passes, the database cannot be reached, or a signal stops it.
func waitUntilCurrent(ctx context.Context, cfg *waitConfig, log *slog.Logger) report.Result {
	started := time.Now()
	res := report.Result{Started: started, ExitCode: -1}
	defer func() { res.Duration = time.Since(started) }()

	cs, err := newCheckers(cfg.targets, time.Duration(cfg.ConnectTimeout), log)
	if err != nil {
		res.Outcome, res.Err = report.ConfigError, err.Error()
		return res
	}
	defer cs.close()

	sigs, stopWatching := watchSignals()
	defer stopWatching()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.WaitTimeout))
	defer cancel()
	ctx, release := cancelOnSignal(ctx, sigs)
	defer release()

	backoff := 100 * time.Millisecond
	last := ""
	for {
		missing, err := cs.pending(ctx, cfg.targets)
		switch {
		case ctx.Err() != nil:
			if sig := signalOf(ctx); sig != 0 {
				res.Outcome, res.Signal = report.Stopped, sig
				return res
			}
			res.Outcome = report.StillPending
			res.Err = fmt.Sprintf("still pending after %s: %s", time.Duration(cfg.WaitTimeout), last)
			return res
		case errors.Is(err, dbconn.ErrUnavailable):
			res.Outcome, res.Err = report.Unreachable, err.Error()
			return res
		case err != nil:
			log.Warn("cannot read applied migrations; retrying", "err", err)
		case len(missing) == 0:
			res.Outcome = report.Current
			return res
		default:
			if now := describePending(missing); now != last {
				log.Info("waiting for migrations", "pending", now)
				last = now
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// nothingPending checks whether every database already has every
// migration the image carries; then the command (a Rails boot per Pod,
// for init containers) is not needed. When the check cannot tell, the
// command runs: it is the authority.
func (r *run) nothingPending(ctx context.Context) bool {
	cs, err := newCheckers(r.cfg.targets, time.Duration(r.cfg.ConnectTimeout), r.log)
	if err != nil {
		r.log.Warn("cannot check pending migrations; running the command", "err", err)
		return false
	}
	defer cs.close()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.ConnectTimeout))
	defer cancel()
	missing, err := cs.pending(ctx, r.cfg.targets)
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

// checkers compare each of the app's databases with the migrations the
// image carries, keeping one connection per database between checks.
type checkers []*pending.Checker

func newCheckers(targets []target, connectTimeout time.Duration, log *slog.Logger) (checkers, error) {
	var cs checkers
	for _, t := range targets {
		files, err := rails.MigrationFiles(t.paths)
		if err != nil {
			return nil, err
		}
		c, err := pending.New(pending.Database{Name: t.name, URL: t.url, Files: files}, connectTimeout, log)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// pending lists, per database name, the versions not applied yet.
func (cs checkers) pending(ctx context.Context, targets []target) (map[string][]string, error) {
	out := map[string][]string{}
	for i, c := range cs {
		files, err := c.Pending(ctx)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			out[targets[i].name] = append(out[targets[i].name], f.Version)
		}
	}
	return out, nil
}

func (cs checkers) close() {
	for _, c := range cs {
		c.Close()
	}
}

// describePending says which versions are pending, a few per database.
func describePending(missing map[string][]string) string {
	var parts []string
	for name, versions := range missing {
		shown := versions
		if len(shown) > 5 {
			shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(versions)-5))
		}
		parts = append(parts, name+": "+strings.Join(shown, ", "))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
