package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// binaryTarget is the bound on the stripped binary, in bytes
// (decimal megabytes, as binary sizes are quoted).
const binaryTarget = 15e6

// startupTarget is issue 16's bound on what `migrun version` costs over a
// minimal Go program: half the 0.8 ms the issue measured (package
// initialisation), an absolute figure, so only meaningful on an idle
// machine like the issue's.
const startupTarget = 400 * time.Microsecond

// variant is one way of running a program, for the start-up figures.
type variant struct {
	name string
	inv  invocation
}

func benchFootprint(ctx context.Context, t *tools, srv *servers, rounds int) *section {
	s := &section{num: 6, title: "Footprint"}
	s.method = fmt.Sprintf("The binary is the one measured throughout, built as `make build` builds it (static, stripped). "+
		"Start-up: `migrun version`, against `/usr/bin/true` (a C program) and the helper doing nothing (a minimal static "+
		"Go program: Go's own start-up), %d runs each, interleaved; medians of the wall time from fork to wait4. "+
		"Idle RSS: VmRSS of migrun holding each lock while its command (`sleep`) runs, read from /proc once it settled; "+
		"and of migrun waiting for a held lock.", rounds)
	fi, err := os.Stat(t.migrun)
	if err != nil {
		s.err = err
		return s
	}
	size := float64(fi.Size())
	s.rows = append(s.rows, row{what: "stripped binary size (linux/amd64)", result: fmt.Sprintf("%s (%s)", mb(size), mib(size)),
		target: "< 15 MB", verdict: judge(size < binaryTarget)})

	variants := []variant{
		{"`/usr/bin/true`", invocation{path: "/usr/bin/true"}},
		{"minimal static Go program", invocation{path: t.helper, args: []string{"nop"}}},
		{"`migrun version`", invocation{args: []string{"version"}}},
	}
	walls := make([][]time.Duration, len(variants))
	for round := -1; round < rounds; round++ {
		for i, v := range variants {
			o, err := t.run(v.inv)
			if err != nil {
				s.err = err
				return s
			}
			if round >= 0 {
				walls[i] = append(walls[i], o.wall())
			}
		}
	}
	trueMed, goMed, verMed := durations(walls[0]).medianDur(), durations(walls[1]).medianDur(), durations(walls[2]).medianDur()
	s.rows = append(s.rows, row{what: "start-up: `migrun version`", result: fmt.Sprintf("%s (p99 %s)", ms(verMed), ms(durations(walls[2]).p99Dur())),
		baseline: fmt.Sprintf("%s minimal Go program; %s `/usr/bin/true`", ms(goMed), ms(trueMed)),
		ratio:    fmt.Sprintf("+%s over minimal Go", ms(verMed-goMed)),
		target:   "≤ +" + ms(startupTarget) + " (half the issue's +0.8 ms)", verdict: judge(verMed-goMed <= startupTarget)})

	// Package initialisation, as the Go runtime reports it.
	inits, total, err := initTrace(t, rounds)
	if err == nil && len(inits) == 0 {
		err = fmt.Errorf("GODEBUG=inittrace=1 migrun version printed no init lines")
	}
	if err != nil {
		s.err = err
		return s
	}
	var initRows [][]string
	for _, in := range inits[:min(5, len(inits))] {
		initRows = append(initRows, []string{in.pkg, us(in.clock)})
	}
	s.detail = append(s.detail, fmt.Sprintf("`GODEBUG=inittrace=1 migrun version` (%d runs): the initialisation of its %d packages "+
		"takes %s (median of the per-run sum; the trace itself adds to it), the most expensive:\n\n%s",
		rounds, len(inits), ms(total), table([]string{"package", "median init time"}, initRows)))
	helperSize := 0.0
	if hi, err := os.Stat(t.helper); err == nil {
		helperSize = float64(hi.Size())
	}
	s.notes = append(s.notes, fmt.Sprintf("**What bounds the start-up.** A static Go program needs %s from fork to exit here, a C "+
		"`true` %s. `migrun version` needs %s more than the minimal Go program: initialising its %d packages (about %s, "+
		"spread thin, none over %s: the runtime and standard library, the Slack client with net/http and crypto/tls, the two "+
		"database drivers, x/text), and faulting in the pages of a %s binary where the helper's is %s. It is paid once per "+
		"run; a PostgreSQL connection costs more (§1).",
		ms(goMed), ms(trueMed), ms(verMed-goMed), len(inits), ms(total), us(inits[0].clock), mb(size), mb(helperSize)))

	// Idle RSS: holding the lock while the command runs, and waiting.
	_, pgURL := srv.database("postgresql")
	_, myURL := srv.database("mariadb")
	locks := []struct{ label, url string }{
		{"file lock", "sqlite3:" + filepath.Join(t.tmp, "footprint.sqlite3")},
		{"PostgreSQL", pgURL},
		{"MariaDB", myURL},
	}
	var rssRows [][]string
	var worst int64
	for _, l := range locks {
		env := map[string]string{"DATABASE_URL": l.url}
		holder, err := t.start(invocation{args: []string{"run", "--", "sleep", "3"}, env: env})
		if err != nil {
			s.err = err
			return s
		}
		if err := waitUntil(20*time.Second, "the holder to run its command", func() bool { return holder.stderr.Contains("running command") }); err != nil {
			s.err = err
			return s
		}
		waiter, err := t.start(invocation{args: []string{"run", "--", "true"}, env: env})
		if err != nil {
			s.err = err
			return s
		}
		time.Sleep(time.Second) // let both settle: connected, waiting
		held, err1 := procStatus(holder.pid(), "VmRSS")
		waiting, err2 := procStatus(waiter.pid(), "VmRSS")
		for _, r := range []*running{holder, waiter} {
			if _, err := r.wait(); err != nil {
				s.err = err
				return s
			}
		}
		if err1 != nil || err2 != nil {
			s.err = fmt.Errorf("read /proc: %v, %v", err1, err2)
			return s
		}
		worst = max(worst, held, waiting)
		rssRows = append(rssRows, []string{l.label, mib(float64(held)), mib(float64(waiting))})
	}
	s.rows = append(s.rows, row{what: "idle RSS (holding or waiting for a lock)", result: mib(float64(worst)) + " at most; by lock below",
		baseline: "—", target: "(none; pass-through: < 30 MiB)"})
	s.detail = append(s.detail, "Idle RSS (VmRSS) by lock:\n\n"+table([]string{"lock", "holding, command running", "waiting for the lock"}, rssRows))
	return s
}

// initCost is one package's initialisation time.
type initCost struct {
	pkg   string
	clock time.Duration
}

// initTrace runs `migrun version` with GODEBUG=inittrace=1 and returns
// the packages by median init time, and the median total.
func initTrace(t *tools, runs int) ([]initCost, time.Duration, error) {
	per := map[string][]time.Duration{}
	var totals []time.Duration
	for range runs {
		o, err := t.run(invocation{args: []string{"version"}, env: map[string]string{"GODEBUG": "inittrace=1"}})
		if err != nil {
			return nil, 0, err
		}
		var sum time.Duration
		for _, line := range strings.Split(string(o.stderr), "\n") {
			// init PKG @0.52 ms, 0.038 ms clock, 312 bytes, 7 allocs
			f := strings.Fields(line)
			if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
				continue
			}
			v, err := strconv.ParseFloat(f[4], 64)
			if err != nil {
				continue
			}
			d := time.Duration(v * float64(time.Millisecond))
			per[f[1]] = append(per[f[1]], d)
			sum += d
		}
		totals = append(totals, sum)
	}
	var out []initCost
	for pkg, ds := range per {
		out = append(out, initCost{pkg, durations(ds).medianDur()})
	}
	slices.SortFunc(out, func(a, b initCost) int { return int(b.clock - a.clock) })
	return out, durations(totals).medianDur(), nil
}
