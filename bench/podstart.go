package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// podStartSlack is the bound: N init containers running
// `migrun run --skip-if-current` at once, with nothing pending, finish
// within 1.3× of N `migrun wait`s at once: the check before the lock
// spares them queueing behind each other to learn there is nothing to do.
const podStartSlack = 1.3

// podStartSizes are the numbers of Pods started at once.
var podStartSizes = []int{20, 50}

func benchPodStart(ctx context.Context, t *tools, srv *servers, rounds int) *section {
	s := &section{num: 7, title: "Pod start: many init containers at once, nothing pending"}
	app, err := railsApp(ctx, t, 0, "railsapp-podstart")
	if err != nil {
		s.err = err
		return s
	}
	s.method = fmt.Sprintf("A rollout starting N Pods at once, each with an init container, nothing pending (the integration tests' "+
		"Rails app, migrated once before measuring). Per database, N and round, interleaved: N `migrun wait` started at once "+
		"(the baseline: a gate that takes no lock), and N `migrun run --skip-if-current` started at once (the gate checked "+
		"before the lock, so none of them queues for it). The figure is the wall time from the first start to the last exit. "+
		"N = %d and %d; %d rounds; medians.", podStartSizes[0], podStartSizes[1], rounds)
	for _, kind := range []string{"postgresql", "mariadb"} {
		label := map[string]string{"postgresql": "PostgreSQL", "mariadb": "MariaDB"}[kind]
		_, url := srv.database(kind)
		env := map[string]string{"DATABASE_URL": url, "RAILS_ENV": "production"}
		if _, err := t.run(invocation{dir: app, env: env, args: []string{"run"}}); err != nil {
			s.err = fmt.Errorf("%s: apply the migrations: %w", label, err)
			return s
		}
		for _, n := range podStartSizes {
			var waits, skips []time.Duration
			for range rounds {
				if err := ctx.Err(); err != nil {
					s.err = err
					return s
				}
				w, err := startAtOnce(t, n, invocation{dir: app, env: env, args: []string{"wait"}}, "no migration pending")
				if err != nil {
					s.err = fmt.Errorf("%s: %d × wait: %w", label, n, err)
					return s
				}
				k, err := startAtOnce(t, n, invocation{dir: app, env: env, args: []string{"run", "--skip-if-current"}}, "not running the command")
				if err != nil {
					s.err = fmt.Errorf("%s: %d × run --skip-if-current: %w", label, n, err)
					return s
				}
				waits, skips = append(waits, w), append(skips, k)
			}
			w, k := durations(waits).medianDur(), durations(skips).medianDur()
			r := float64(k) / float64(w)
			s.rows = append(s.rows, row{
				what:     fmt.Sprintf("%d × `migrun run --skip-if-current` at once, %s", n, label),
				result:   ms(k),
				baseline: fmt.Sprintf("%s %d × `migrun wait` at once", ms(w), n),
				ratio:    fmt.Sprintf("%.2f×", r),
				target:   fmt.Sprintf("≤ %.1f×", podStartSlack),
				verdict:  judge(r <= podStartSlack),
			})
		}
	}
	return s
}

// startAtOnce starts n copies of inv, waits for all, and returns the time
// from the first start to the last exit. Each must exit 0 and log want.
func startAtOnce(t *tools, n int, inv invocation, want string) (time.Duration, error) {
	started := make([]*running, 0, n)
	for range n {
		r, err := t.start(inv)
		if err != nil {
			return 0, err
		}
		started = append(started, r)
	}
	var first, last time.Time
	for i, r := range started {
		o, err := r.wait()
		if err != nil {
			return 0, err
		}
		if o.status != 0 || !strings.Contains(string(o.stderr), want) {
			return 0, fmt.Errorf("exit %d without %q:\n%s", o.status, want, tail(o.stderr, 2000))
		}
		if i == 0 || o.started.Before(first) {
			first = o.started
		}
		if o.ended.After(last) {
			last = o.ended
		}
	}
	return last.Sub(first), nil
}
