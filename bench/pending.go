package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// pendingSpeedup is the bound: `migrun wait` at least 50× faster
// than Rails' own check.
const pendingSpeedup = 50

func benchPending(ctx context.Context, t *tools, srv *servers, rounds, migrations int) *section {
	s := &section{num: 5, title: fmt.Sprintf("Pending check with %d migration files", migrations)}
	app, err := railsApp(ctx, t, migrations, "railsapp")
	if err != nil {
		s.err = err
		return s
	}
	s.method = fmt.Sprintf("The integration tests' Rails app (Debian's Rails, `bundle install --local`) with %d migration "+
		"files (its 2 own and %d empty ones), migrated once before measuring, so nothing is pending. Per database and round, "+
		"interleaved: `migrun wait`; `bundle exec rails db:abort_if_pending_migrations` (RAILS_ENV=production, the same app, "+
		"the same database); `migrun run --skip-if-current` (default command, which it skips); `migrun run` (which runs "+
		"`bundle exec rails db:migrate`, finding nothing to do). The fast migrun variants run 4 times per round. "+
		"%d rounds; medians of the wall time of the whole process.", migrations, migrations-2, rounds)
	for _, kind := range []string{"postgresql", "mariadb"} {
		label := map[string]string{"postgresql": "PostgreSQL", "mariadb": "MariaDB"}[kind]
		_, url := srv.database(kind)
		env := map[string]string{"DATABASE_URL": url, "RAILS_ENV": "production"}
		start := time.Now()
		if _, err := t.run(invocation{dir: app, env: env, args: []string{"run"}}); err != nil {
			s.err = fmt.Errorf("%s: apply the migrations: %w", label, err)
			return s
		}
		applied := time.Since(start)
		var wait, abort, skip, full []time.Duration
		for range rounds {
			if err := ctx.Err(); err != nil {
				s.err = err
				return s
			}
			for range 4 {
				o, err := t.run(invocation{dir: app, env: env, args: []string{"wait"}})
				if err != nil {
					s.err = err
					return s
				}
				if !strings.Contains(string(o.stderr), "no migration pending") {
					s.err = fmt.Errorf("%s: migrun wait did not find everything applied:\n%s", label, o.stderr)
					return s
				}
				wait = append(wait, o.wall())
			}
			o, err := t.run(invocation{path: "bundle", dir: app, env: env, args: []string{"exec", "rails", "db:abort_if_pending_migrations"}})
			if err != nil {
				s.err = err
				return s
			}
			abort = append(abort, o.wall())
			for range 4 {
				o, err = t.run(invocation{dir: app, env: env, args: []string{"run", "--skip-if-current"}})
				if err != nil {
					s.err = err
					return s
				}
				if !strings.Contains(string(o.stderr), "not running the command") {
					s.err = fmt.Errorf("%s: run --skip-if-current ran the command:\n%s", label, o.stderr)
					return s
				}
				skip = append(skip, o.wall())
			}
			o, err = t.run(invocation{dir: app, env: env, args: []string{"run"}})
			if err != nil {
				s.err = err
				return s
			}
			full = append(full, o.wall())
		}
		w, a := durations(wait).medianDur(), durations(abort).medianDur()
		k, f := durations(skip).medianDur(), durations(full).medianDur()
		speedup := float64(a) / float64(w)
		s.rows = append(s.rows,
			row{what: "`migrun wait`, nothing pending, " + label, result: ms(w),
				baseline: ms(a) + " `rails db:abort_if_pending_migrations`",
				ratio:    fmt.Sprintf("%.0f× faster", speedup), target: "≥ 50× faster", verdict: judge(speedup >= pendingSpeedup)},
			row{what: "`migrun run --skip-if-current`, nothing pending, " + label, result: ms(k),
				baseline: ms(f) + " `migrun run` (Rails db:migrate)",
				ratio:    fmt.Sprintf("%.0f× faster", float64(f)/float64(k))},
		)
		s.detail = append(s.detail, fmt.Sprintf("%s: applying the %d migrations once (before measuring) took %s through `migrun run`. "+
			"Ranges: `migrun wait` %s – %s, Rails' check %s – %s, `run --skip-if-current` %s – %s, `run` %s – %s.",
			label, migrations, applied.Round(100*time.Millisecond),
			ms(time.Duration(durations(wait).min())), ms(time.Duration(durations(wait).max())),
			ms(time.Duration(durations(abort).min())), ms(time.Duration(durations(abort).max())),
			ms(time.Duration(durations(skip).min())), ms(time.Duration(durations(skip).max())),
			ms(time.Duration(durations(full).min())), ms(time.Duration(durations(full).max()))))
	}
	return s
}

// railsApp copies the integration tests' Rails app into the run's scratch
// directory name, bundles it offline and gives it n migration files (at
// least its own).
func railsApp(ctx context.Context, t *tools, n int, name string) (string, error) {
	if _, err := exec.LookPath("bundle"); err != nil {
		return "", errors.New("bundler is not installed (apt-get install ruby-railties ruby-activerecord ruby-pg ruby-mysql2 bundler rake)")
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	app := filepath.Join(t.tmp, name)
	if err := os.CopyFS(app, os.DirFS(filepath.Join(root, "integration", "testdata", "railsapp"))); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Join(app, "bin", "rails"), 0o755); err != nil {
		return "", err
	}
	install := exec.CommandContext(ctx, "bundle", "install", "--local", "--quiet")
	install.Dir = app
	if out, err := install.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bundle install --local: %v\n%s", err, out)
	}
	dir := filepath.Join(app, "db", "migrate")
	existing, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for i := range n - len(existing) {
		name := fmt.Sprintf("2024020100%04d_bench_step_%04d.rb", i, i)
		src := fmt.Sprintf("class BenchStep%04d < ActiveRecord::Migration[6.1]\n  def change\n  end\nend\n", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			return "", err
		}
	}
	return app, nil
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the benchmarks from the migrun module (no go.mod found)")
		}
		dir = parent
	}
}
