package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// binaryTarget is the bound on the stripped binary, in bytes
// (decimal megabytes, as binary sizes are quoted).
const binaryTarget = 15e6

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
		ratio:    fmt.Sprintf("+%s over minimal Go", ms(verMed-goMed))})

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
	s.rows = append(s.rows, row{what: "idle RSS (holding or waiting for a lock)", result: mib(float64(worst)) + " at most; by lock below"})
	s.detail = append(s.detail, "Idle RSS (VmRSS) by lock:\n\n"+table([]string{"lock", "holding, command running", "waiting for the lock"}, rssRows))
	return s
}
