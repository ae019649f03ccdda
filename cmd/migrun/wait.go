package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/pending"
	"github.com/migrun/migrun/rails"
)

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

// waitCommand is `migrun wait`: block until every database has every
// migration the image carries, so app Pods start only on a migrated
// schema. It reads files and schema_migrations; it never boots Ruby.
func waitCommand(ctx context.Context, args []string, environ map[string]string, stderr io.Writer) int {
	cfg, err := parseRun(args, environ, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil && len(cfg.Targets) == 0 {
		if terr := cfg.resolveTargets(environ); terr != nil {
			err = fmt.Errorf("%w: %s", errUsage, terr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "migrun: %s\n", redact.New(rawSecrets(args, environ)...).String(err.Error()))
		return exitUsage
	}
	log := newLogger(cfg, stderr, redact.New(cfg.secrets()...))
	cs, err := newCheckers(cfg.Targets, cfg.ConnectTimeout, log)
	if err != nil {
		log.Error("cannot check pending migrations", "err", err)
		return exitUsage
	}
	defer cs.close()

	ctx, cancel := context.WithTimeout(ctx, cfg.WaitTimeout)
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	var stoppedBy os.Signal
	go func() {
		select {
		case stoppedBy = <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()

	started := time.Now()
	backoff := 100 * time.Millisecond
	last := ""
	for {
		missing, err := cs.pending(ctx, cfg.Targets)
		switch {
		case ctx.Err() != nil:
			if sig, ok := stoppedBy.(syscall.Signal); ok {
				return 128 + int(sig)
			}
			log.Error("migrations still pending at the wait timeout", "timeout", cfg.WaitTimeout, "pending", last)
			return exitTempFail
		case errors.Is(err, dbconn.ErrUnavailable):
			log.Error("database unreachable", "err", err)
			return exitUnavailable
		case err != nil:
			log.Warn("cannot read applied migrations; retrying", "err", err)
		case len(missing) == 0:
			log.Info("no migration pending", "waited", time.Since(started).Round(time.Millisecond))
			return 0
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
