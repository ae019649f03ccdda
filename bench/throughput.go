package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const (
	throughputRunners = 20
	throughputHold    = 100 * time.Millisecond
	// throughputSlack is the bound: total within 5% of 20 × 100 ms.
	throughputSlack = 0.05
)

// lockKind is one of the locks the throughput benchmark serialises on.
type lockKind struct {
	label string
	url   func(round int) string
}

func benchThroughput(ctx context.Context, t *tools, srv *servers, rounds int) *section {
	s := &section{num: 3, title: "Serialised throughput: 20 runners of a 100 ms command"}
	ideal := throughputRunners * throughputHold
	s.method = fmt.Sprintf("%d runners start at once on one lock; each runs the helper, which sleeps %s between its start "+
		"and end marks. The time is from the first fork to the last runner's exit, as the benchmark program sees it. "+
		"The ideal is %d × %s = %s; the baseline is the same %d commands run one after another without migrun, "+
		"measured in the same round. %d rounds per lock, interleaved; medians.",
		throughputRunners, throughputHold, throughputRunners, throughputHold, ideal, throughputRunners, rounds)
	_, pgURL := srv.database("postgresql")
	_, myURL := srv.database("mariadb")
	locks := []lockKind{
		{"PostgreSQL", func(int) string { return pgURL }},
		{"MariaDB", func(int) string { return myURL }},
		{"file lock (sqlite3)", func(round int) string {
			return "sqlite3:" + filepath.Join(t.tmp, fmt.Sprintf("throughput-%d.sqlite3", round))
		}},
	}
	totals := make([][]time.Duration, len(locks))
	gaps := make([][]time.Duration, len(locks))
	var bare []time.Duration
	for round := range rounds {
		b, err := bareSerial(t, round)
		if err != nil {
			s.err = err
			return s
		}
		bare = append(bare, b)
		for i, l := range locks {
			if err := ctx.Err(); err != nil {
				s.err = err
				return s
			}
			total, g, err := throughputRound(t, l.url(round), fmt.Sprintf("%d-%d", i, round))
			if err != nil {
				s.err = fmt.Errorf("%s: %w", l.label, err)
				return s
			}
			totals[i] = append(totals[i], total)
			gaps[i] = append(gaps[i], g...)
		}
	}
	baseMed := durations(bare).medianDur()
	s.rows = append(s.rows, row{what: "throughput baseline: 20 × helper (100 ms) one after another, no migrun",
		result: ms(baseMed), baseline: "ideal " + ms(ideal), ratio: ratio(float64(baseMed), float64(ideal))})
	var gapRows [][]string
	for i, l := range locks {
		med := durations(totals[i]).medianDur()
		limit := time.Duration(float64(ideal) * (1 + throughputSlack))
		s.rows = append(s.rows, row{
			what:     "20 runners × 100 ms, " + l.label,
			result:   fmt.Sprintf("%s (rounds: %s)", ms(med), list(totals[i])),
			baseline: "ideal " + ms(ideal) + "; bare serial " + ms(baseMed),
			ratio:    ratio(float64(med), float64(ideal)) + " of ideal",
			target:   "≤ " + ms(limit) + " (ideal + 5%)",
			verdict:  judge(med <= limit),
		})
		g := durations(gaps[i])
		gapRows = append(gapRows, []string{l.label, ms(g.medianDur()), ms(g.p99Dur()), ms(time.Duration(g.max())),
			ms(time.Duration(g.sum() / float64(rounds)))})
	}
	s.detail = append(s.detail, "The gaps between one command's end and the next one's start (the hand-offs, with 19 down to 1 runners waiting), "+
		"and their sum per round, which is what the total adds to the commands' own time:\n\n"+
		table([]string{"lock", "gap p50", "gap p99", "gap max", "sum of gaps per round"}, gapRows))
	return s
}

// throughputRound starts the runners together and waits for all of them.
func throughputRound(t *tools, url, tag string) (time.Duration, []time.Duration, error) {
	marks := filepath.Join(t.tmp, "throughput-"+tag+".marks")
	env := map[string]string{"DATABASE_URL": url}
	var rs []*running
	start := time.Now()
	for range throughputRunners {
		r, err := t.start(invocation{args: []string{"run", "--", t.helper, "stamp", marks, "-sleep", throughputHold.String()}, env: env})
		if err != nil {
			return 0, nil, err
		}
		rs = append(rs, r)
	}
	for _, r := range rs {
		o, err := r.wait()
		if err != nil {
			return 0, nil, err
		}
		if o.status != 0 {
			return 0, nil, fmt.Errorf("a runner exited %d:\n%s", o.status, tail(o.stderr, 2000))
		}
	}
	total := time.Since(start)
	cs, err := readMarks(marks)
	if err != nil {
		return 0, nil, err
	}
	if len(cs) != throughputRunners {
		return 0, nil, fmt.Errorf("%d critical sections, want %d", len(cs), throughputRunners)
	}
	var gaps []time.Duration
	for i := 1; i < len(cs); i++ {
		gaps = append(gaps, cs[i].start.Sub(cs[i-1].end))
	}
	return total, gaps, os.Remove(marks)
}

// bareSerial runs the 20 commands one after another without migrun.
func bareSerial(t *tools, round int) (time.Duration, error) {
	marks := filepath.Join(t.tmp, fmt.Sprintf("throughput-bare-%d.marks", round))
	start := time.Now()
	for range throughputRunners {
		if _, err := t.run(invocation{path: t.helper, args: []string{"stamp", marks, "-sleep", throughputHold.String()}}); err != nil {
			return 0, err
		}
	}
	total := time.Since(start)
	return total, os.Remove(marks)
}

func list(ds []time.Duration) string {
	out := ""
	for i, d := range ds {
		if i > 0 {
			out += ", "
		}
		out += ms(d)
	}
	return out
}
