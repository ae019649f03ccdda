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

// startupTarget is issue 16's bound on migrun's own start-up: what
// `migrun version` costs beyond a program that links the same fixed
// libraries (pgx/v5, go-sql-driver/mysql, slack-go/slack, caarlos0/env/v11,
// whose package initialisation runs in any program linking them) and exits.
// Half the 0.8 ms the issue measured (package initialisation), an absolute
// figure, so only meaningful on an idle machine like the issue's.
const startupTarget = 400 * time.Microsecond

// variant is one way of running a program, for the start-up figures.
type variant struct {
	name string
	inv  invocation
}

func benchFootprint(ctx context.Context, t *tools, srv *servers, rounds int) *section {
	s := &section{num: 6, title: "Footprint"}
	s.method = fmt.Sprintf("The binary is the one measured throughout, built as `make build` builds it (static, stripped). "+
		"Start-up: `migrun version`, against `/usr/bin/true` (a C program), the helper doing nothing (a minimal static "+
		"Go program: Go's own start-up) and `limit start` (bench/limit, built the same way, exiting at once: a program "+
		"that links the libraries migrun's design fixes, pgx/v5, go-sql-driver/mysql, slack-go/slack and "+
		"caarlos0/env/v11, whose package initialisation runs before main in any program that links them), "+
		"%d runs each, interleaved; medians of the wall time from fork to wait4. The target applies to migrun's own "+
		"start-up, beyond the same-libraries program. In the same rounds, `migrun version` and `limit start` run once "+
		"more each with GODEBUG=inittrace=1: the package initialisation the runtime reports, summed per run by where "+
		"the package comes from. "+
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

	const trueV, goV, libsV, verV = 0, 1, 2, 3
	variants := []variant{
		trueV: {"`/usr/bin/true`", invocation{path: "/usr/bin/true"}},
		goV:   {"minimal static Go program", invocation{path: t.helper, args: []string{"nop"}}},
		libsV: {"same-libraries program (`limit start`)", invocation{path: t.limit, args: []string{"start"}}},
		verV:  {"`migrun version`", invocation{args: []string{"version"}}},
	}
	// The traced runs: their wall time is not used (the trace adds to it).
	inittrace := map[string]string{"GODEBUG": "inittrace=1"}
	traced := []invocation{
		{args: []string{"version"}, env: inittrace},
		{path: t.limit, args: []string{"start"}, env: inittrace},
	}
	walls := make([][]time.Duration, len(variants))
	traces := make([]initTraces, len(traced))
	for round := -1; round < rounds; round++ {
		if err := t.recache(round); err != nil {
			s.err = err
			return s
		}
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
		for i, inv := range traced {
			o, err := t.run(inv)
			if err != nil {
				s.err = err
				return s
			}
			if round >= 0 {
				traces[i].add(parseInitTrace(o.stderr))
			}
		}
	}
	med := func(i int) time.Duration { return durations(walls[i]).medianDur() }
	trueMed, goMed, libsMed, verMed := med(trueV), med(goV), med(libsV), med(verV)
	// migrun's own start-up is judged round by round: each round runs
	// both, so the median of the differences leaves out the drift between
	// rounds that a difference of medians keeps.
	var diffs sample
	for i := range walls[verV] {
		diffs = append(diffs, float64(walls[verV][i]-walls[libsV][i]))
	}
	own := diffs.medianDur()
	s.rows = append(s.rows,
		row{what: "start-up: `migrun version` over a minimal Go program", result: fmt.Sprintf("%s (p99 %s)", ms(verMed), ms(durations(walls[verV]).p99Dur())),
			baseline: fmt.Sprintf("%s minimal Go program; %s `/usr/bin/true`", ms(goMed), ms(trueMed)),
			ratio:    signed(verMed-goMed) + " over minimal Go"},
		row{what: "start-up: `migrun version` beyond its fixed libraries", result: ms(verMed),
			baseline: fmt.Sprintf("%s same-libraries program (`limit start`)", ms(libsMed)),
			ratio:    signed(own) + " over the same libraries (median of the rounds' differences)",
			target:   "≤ +" + ms(startupTarget) + " (half the issue's +0.8 ms)", verdict: judge(own <= startupTarget)})

	// Package initialisation, as the Go runtime reports it.
	mig, lim := traces[0], traces[1]
	if len(mig.per) == 0 || len(lim.per) == 0 {
		s.err = fmt.Errorf("GODEBUG=inittrace=1 printed no init lines (migrun version: %d packages, limit start: %d)", len(mig.per), len(lim.per))
		return s
	}
	var initRows [][]string
	for _, o := range []initOrigin{originStd, originThirdParty, originOwn} {
		initRows = append(initRows, []string{o.String(),
			fmt.Sprintf("%s (%d packages)", ms(mig.medianOf(o)), mig.count(o)),
			fmt.Sprintf("%s (%d packages)", ms(lim.medianOf(o)), lim.count(o))})
	}
	initRows = append(initRows, []string{"all packages", fmt.Sprintf("%s (%d packages)", ms(mig.medianTotal()), len(mig.per)),
		fmt.Sprintf("%s (%d packages)", ms(lim.medianTotal()), len(lim.per))})
	s.detail = append(s.detail, fmt.Sprintf("Package initialisation (`GODEBUG=inittrace=1`, %d runs of each, interleaved with the "+
		"timed runs): the init clock summed over the packages of each origin in a run, median over the runs (so the rows need "+
		"not add up to the total; the trace itself adds to the times). Programs' own packages are github.com/migrun/migrun/... "+
		"and the main package (cmd/migrun; bench/limit's main):\n\n%s", rounds,
		table([]string{"package initialisation", "`migrun version`", "same-libraries program (`limit start`)"}, initRows)))
	top := mig.top()
	var topRows [][]string
	for _, in := range top[:min(5, len(top))] {
		topRows = append(topRows, []string{in.pkg, in.origin.String(), us(in.clock)})
	}
	s.detail = append(s.detail, "The most expensive package initialisations of `migrun version` (medians):\n\n"+
		table([]string{"package", "origin", "median init time"}, topRows))

	sizeOf := func(path string) float64 {
		if fi, err := os.Stat(path); err == nil {
			return float64(fi.Size())
		}
		return 0
	}
	libInit := mig.medianOf(originStd) + mig.medianOf(originThirdParty)
	s.notes = append(s.notes, fmt.Sprintf("**What bounds the start-up.** A static Go program needs %s from fork to exit here, a C "+
		"`true` %s. Linking migrun's fixed libraries costs %s over it (the same-libraries program, %s): their package "+
		"initialisation and that of the standard library they pull in (the Slack client with net/http and crypto/tls, "+
		"the two database drivers, x/text: %s in the trace), and faulting in the pages of a %s binary where the minimal "+
		"program's is %s. No program built on these libraries starts faster. `migrun version` needs %s beyond that "+
		"(the median of the rounds' differences; the difference of the two medians is %s, and the differences' quartiles "+
		"are %s and %s: an absolute figure this small moves with the machine's load): initialising migrun's own %d packages takes %s, the libraries' "+
		"%d packages %s (the same-libraries program's %d: %s), and its binary is %s. It is paid once per run; "+
		"a PostgreSQL connection costs more (§1).",
		ms(goMed), ms(trueMed), signed(libsMed-goMed), ms(libsMed),
		ms(lim.medianOf(originStd)+lim.medianOf(originThirdParty)), mb(sizeOf(t.limit)), mb(sizeOf(t.helper)),
		signed(own), signed(verMed-libsMed), signed(time.Duration(diffs.quantile(0.25))), signed(time.Duration(diffs.quantile(0.75))),
		mig.count(originOwn), ms(mig.medianOf(originOwn)),
		mig.count(originStd)+mig.count(originThirdParty), ms(libInit),
		lim.count(originStd)+lim.count(originThirdParty), ms(lim.medianOf(originStd)+lim.medianOf(originThirdParty)), mb(size)))

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
		// The servers are older than the takeover guard (servers.settle):
		// the holder runs its command at once.
		if err := waitUntil(time.Minute, "the holder to run its command", func() bool { return holder.stderr.Contains("running command") }); err != nil {
			s.err = fmt.Errorf("%s, %v; its log: %s", l.label, err, strings.TrimSpace(string(holder.stderr.Bytes())))
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

// initOrigin is where a package comes from, for the start-up figures.
type initOrigin int

const (
	originStd        initOrigin = iota // the standard library (and what it vendors)
	originThirdParty                   // the fixed libraries and their dependencies
	originOwn                          // the program's own: github.com/migrun/migrun/..., main
)

func (o initOrigin) String() string {
	switch o {
	case originStd:
		return "standard library"
	case originThirdParty:
		return "fixed libraries and their dependencies (other modules)"
	}
	return "the program's own packages"
}

// originOf classifies an import path: a first element without a dot is
// the standard library's (vendor/golang.org/x/... included), except main.
func originOf(pkg string) initOrigin {
	switch {
	case pkg == "main" || pkg == "github.com/migrun/migrun" || strings.HasPrefix(pkg, "github.com/migrun/migrun/"):
		return originOwn
	case !strings.Contains(strings.SplitN(pkg, "/", 2)[0], "."):
		return originStd
	}
	return originThirdParty
}

// parseInitTrace reads GODEBUG=inittrace=1 output: each package's init
// clock time.
//
//	init PKG @0.52 ms, 0.038 ms clock, 312 bytes, 7 allocs
func parseInitTrace(stderr []byte) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, line := range strings.Split(string(stderr), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "init" || f[5] != "ms" || f[6] != "clock," {
			continue
		}
		v, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			continue
		}
		out[f[1]] += time.Duration(v * float64(time.Millisecond))
	}
	return out
}

// initTraces gathers a program's traced runs.
type initTraces struct {
	per    map[string][]time.Duration     // by package, one per run
	sums   map[initOrigin][]time.Duration // by origin, the sum of one run
	totals []time.Duration                // the sum over all packages of one run
}

func (t *initTraces) add(run map[string]time.Duration) {
	if t.per == nil {
		t.per, t.sums = map[string][]time.Duration{}, map[initOrigin][]time.Duration{}
	}
	sums := map[initOrigin]time.Duration{}
	var total time.Duration
	for pkg, d := range run {
		t.per[pkg] = append(t.per[pkg], d)
		sums[originOf(pkg)] += d
		total += d
	}
	for _, o := range []initOrigin{originStd, originThirdParty, originOwn} {
		t.sums[o] = append(t.sums[o], sums[o])
	}
	t.totals = append(t.totals, total)
}

func (t *initTraces) medianOf(o initOrigin) time.Duration { return durations(t.sums[o]).medianDur() }
func (t *initTraces) medianTotal() time.Duration          { return durations(t.totals).medianDur() }

// count is how many packages of origin o were initialised.
func (t *initTraces) count(o initOrigin) int {
	n := 0
	for pkg := range t.per {
		if originOf(pkg) == o {
			n++
		}
	}
	return n
}

// initCost is one package's median initialisation time.
type initCost struct {
	pkg    string
	origin initOrigin
	clock  time.Duration
}

// top is the packages by median init time, the most expensive first.
func (t *initTraces) top() []initCost {
	var out []initCost
	for pkg, ds := range t.per {
		out = append(out, initCost{pkg, originOf(pkg), durations(ds).medianDur()})
	}
	slices.SortFunc(out, func(a, b initCost) int {
		if a.clock != b.clock {
			return int(b.clock - a.clock)
		}
		return strings.Compare(a.pkg, b.pkg)
	})
	return out
}
