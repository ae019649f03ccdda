package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	handoffWaiters = 10
	handoffP50     = 5 * time.Millisecond
	handoffP99     = 50 * time.Millisecond
	// waitWindow is how long the 10 waiters are watched while they wait:
	// its first second and the rest are reported apart, since waiters may
	// poll more often early on.
	waitWindow = 2 * time.Second
	// waitCPUBound is "no measurable CPU": under 0.1% of one core.
	waitCPUBound = 0.001
	// waiterHold is how long each waiter's command holds the lock.
	waiterHold = 20 * time.Millisecond
)

// handoffStats are one database's hand-offs.
type handoffStats struct {
	kind string
	// total: the holder's command's last instant to the next command's
	// first instant, both written by the commands themselves.
	total []time.Duration
	// The same interval split at migrun's log lines:
	release []time.Duration // command end → holder logged "lock released" (reap, drain, unlock round trip, disconnect)
	wake    []time.Duration // "lock released" → the waiter logged "lock acquired" (notify/grant, try, verify)
	exec    []time.Duration // "lock acquired" → the next command's first instant (prepare, fork, exec, start-up)
	// While the 10 waiters wait (waitWindow, measured from /proc):
	waitCPU     []float64 // each waiter's CPU time per second of waiting, over the whole window
	waitCPU1    []float64 // the same in the window's first second
	waitCPU2    []float64 // the same in the rest of the window
	snapshots   []int     // PostgreSQL: waiter backends holding a snapshot/xid or idle in transaction, per round
	transaction []int     // MariaDB: open InnoDB transactions, per round
	processCPU  []time.Duration
}

func benchHandoff(ctx context.Context, t *tools, srv *servers, rounds int) *section {
	s := &section{num: 2, title: "Lock hand-off with 10 waiters"}
	s.method = fmt.Sprintf("Per database and round: a holder runs a command that waits for a signal file; %d more runners start "+
		"and wait for the lock; once all wait, they are watched for %s (their CPU time from the kernel's per-thread "+
		"schedstat, and on PostgreSQL whether their backends hold a snapshot, an xid or an open transaction in pg_stat_activity; "+
		"on MariaDB whether any InnoDB transaction is open); then the holder is released and the lock passes "+
		"down the queue, each waiter's command holding it %s. "+
		"The commands are a small static Go helper that writes its first and last instant to a file, so a hand-off "+
		"is measured from the releasing runner's command's last instant to the next command's first instant: it "+
		"includes migrun reaping its command, the unlock round trip, waking the waiter, the waiter's lock round trips, "+
		"and forking and starting the next command (a static Go program: ~1 ms of that is the helper's own start-up). "+
		"%d rounds × %d hand-offs per database.",
		handoffWaiters, waitWindow, waiterHold, rounds, handoffWaiters)
	all := map[string]*handoffStats{}
	for _, kind := range []string{"postgresql", "mariadb"} {
		st, err := handoffRounds(ctx, t, srv, kind, rounds)
		if err != nil {
			s.err = fmt.Errorf("%s: %w", kind, err)
			return s
		}
		all[kind] = st
		label := map[string]string{"postgresql": "PostgreSQL", "mariadb": "MariaDB"}[kind]
		tot := durations(st.total)
		s.rows = append(s.rows,
			row{what: "hand-off p50, " + label, result: ms(tot.medianDur()), target: "< 5 ms", verdict: judge(tot.medianDur() < handoffP50),
				baseline: "fork+exec of the helper ≈ " + ms(helperStart(t)), ratio: ""},
			row{what: "hand-off p99, " + label, result: ms(tot.p99Dur()), target: "< 50 ms", verdict: judge(tot.p99Dur() < handoffP99)},
		)
		cpu := sample(st.waitCPU)
		perSec := func(f float64) string { return us(time.Duration(f * float64(time.Second))) }
		s.rows = append(s.rows, row{what: "waiter CPU while waiting, " + label,
			result: fmt.Sprintf("median %s, max %s per second of waiting (%s, %d waiters × %d rounds)",
				perSec(cpu.median()), perSec(cpu.max()), waitWindow, handoffWaiters, rounds),
			target: "no measurable CPU (< 0.1% of a core: 1000 µs/s)", verdict: judge(cpu.max() < waitCPUBound)})
		c1, c2 := sample(st.waitCPU1), sample(st.waitCPU2)
		s.detail = append(s.detail, fmt.Sprintf("%s: waiter CPU per second of waiting, in the window's first second: median %s, max %s; "+
			"in the rest of it: median %s, max %s.", label, perSec(c1.median()), perSec(c1.max()), perSec(c2.median()), perSec(c2.max())))
		if kind == "postgresql" {
			worst := sample(intsToFloats(st.snapshots)).max()
			s.rows = append(s.rows, row{what: "waiters holding a snapshot, PostgreSQL",
				result: fmt.Sprintf("%d of %d waiter backends (max over %d rounds)", int(worst), handoffWaiters, rounds),
				target: "none", verdict: judge(worst == 0)})
		} else {
			worst := sample(intsToFloats(st.transaction)).max()
			s.rows = append(s.rows, row{what: "open transactions while waiting, MariaDB",
				result: fmt.Sprintf("%d (max over %d rounds)", int(worst), rounds), target: "none", verdict: judge(worst == 0)})
		}
		split := [][]string{
			{"total: command end → next command start", ms(tot.medianDur()), ms(tot.p99Dur()), ms(time.Duration(tot.max()))},
		}
		for _, p := range []struct {
			name string
			d    []time.Duration
		}{
			{"releasing side: command end → \"lock released\" logged (reap, unlock round trip, disconnect)", st.release},
			{"wake-up: \"lock released\" → waiter logged \"lock acquired\" (notify or grant, the waiter's lock round trips)", st.wake},
			{"start: \"lock acquired\" → next command's first instant (prepare, fork, exec, Go start-up of the helper)", st.exec},
		} {
			d := durations(p.d)
			split = append(split, []string{p.name, ms(d.medianDur()), ms(d.p99Dur()), ms(time.Duration(d.max()))})
		}
		pc := durations(st.processCPU)
		s.detail = append(s.detail, fmt.Sprintf("%s: where a hand-off's time goes (split at migrun's log lines; the parts' percentiles need not add up):\n\n%s\n"+
			"Whole-process CPU time of a waiting runner (wait4's rusage less its command's own), from start to exit, including connecting, waiting and the hand-off: median %s, max %s.",
			label, table([]string{"", "p50", "p99", "max"}, split), ms(pc.medianDur()), ms(time.Duration(pc.max()))))
	}
	s.notes = append(s.notes, handoffNotes(all[kindPG], all[kindMy], s.rows)...)
	return s
}

const (
	kindPG = "postgresql"
	kindMy = "mariadb"
)

// handoffNotes explains the hand-off figures of the run.
func handoffNotes(pg, my *handoffStats, rows []row) []string {
	p50 := func(d []time.Duration) string { return ms(durations(d).medianDur()) }
	p99 := func(d []time.Duration) string { return ms(durations(d).p99Dur()) }
	perSec := func(f []float64) string { return us(time.Duration(sample(f).median() * float64(time.Second))) }
	notes := []string{fmt.Sprintf("**What bounds it.** A hand-off holds, at the least: the releasing command's exit and migrun "+
		"reaping it, the unlock round trip, waking the next waiter and its lock round trips, and starting the next command "+
		"(fork, exec and, for the helper, about a millisecond of Go start-up). MariaDB grants GET_LOCK to exactly one blocked "+
		"waiter inside the server: its wake-up takes %s (p50). PostgreSQL has no blocking lock call that holds no snapshot, so "+
		"migrun's waiters queue (a shared advisory lock each) and wait for a NOTIFY on a channel of their own: a release "+
		"unlocks, finds the queue's two longest-waiting runners in pg_locks and notifies them, and those two try, a round "+
		"trip each. PostgreSQL signals every listening backend of the database at a NOTIFY, whatever its channel, but only "+
		"the two woken runners come back with a try. PostgreSQL's wake-up is %s (p50) / %s (p99) and its command start %s (p50) "+
		"against MariaDB's %s; its releasing side (the unlock, and the queue read and notification when runners wait) %s "+
		"against %s.",
		p50(my.wake), p50(pg.wake), p99(pg.wake), p50(pg.exec), p50(my.exec), p50(pg.release), p50(my.release))}
	notes = append(notes, fmt.Sprintf("**Waiters' CPU.** PostgreSQL waiters are woken by the release when their turn comes; "+
		"they also poll every 2 s, the fallback for a holder that dies without waking anyone (PostgreSQL frees its lock, "+
		"but nobody notifies): median %s per second in the first second of waiting (joining the queue and the immediate "+
		"second try), %s "+
		"per second later. MariaDB waiters sit in GET_LOCK, re-issued every 5 s (%s per second).",
		perSec(pg.waitCPU1), perSec(pg.waitCPU2), perSec(my.waitCPU)))
	var cpuMissed, handoffMissed bool
	for _, r := range rows {
		if r.verdict == missed && strings.HasSuffix(r.what, "PostgreSQL") {
			cpuMissed = cpuMissed || strings.HasPrefix(r.what, "waiter CPU")
			handoffMissed = handoffMissed || strings.HasPrefix(r.what, "hand-off")
		}
	}
	if cpuMissed {
		notes = append(notes, "What remains of a waiter's CPU is the Go runtime's own timers and the 2 s poll.")
	}
	if handoffMissed {
		notes = append(notes, fmt.Sprintf("The PostgreSQL hand-off misses its bound by the round trips MariaDB does without: "+
			"the release's unlock and queue read (%s p50 on the releasing side) and the woken runner's try, each a wake-up of a "+
			"client and a backend on the same CPUs as the next command's start.", p50(pg.release)))
	}
	return notes
}

func intsToFloats(v []int) sample {
	out := make(sample, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func handoffRounds(ctx context.Context, t *tools, srv *servers, kind string, rounds int) (*handoffStats, error) {
	db, url := srv.database(kind)
	st := &handoffStats{kind: kind}
	for round := range rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := handoffRound(ctx, t, srv, kind, db, url, round, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func handoffRound(ctx context.Context, t *tools, srv *servers, kind, db, url string, round int, st *handoffStats) error {
	dir := filepath.Join(t.tmp, fmt.Sprintf("handoff-%s-%d", kind, round))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	marks, release := filepath.Join(dir, "marks"), filepath.Join(dir, "release")
	env := map[string]string{"DATABASE_URL": url}
	holder, err := t.start(invocation{args: []string{"run", "--", t.helper, "stamp", marks, "-wait", release}, env: env})
	if err != nil {
		return err
	}
	all := []*running{holder}
	// Whatever happens, no runner is left behind.
	defer func() {
		_ = os.WriteFile(release, nil, 0o644)
		for _, r := range all {
			if r.cmd.ProcessState == nil {
				_ = r.cmd.Process.Kill()
				_, _ = r.wait()
			}
		}
	}()
	if err := waitUntil(30*time.Second, "the holder to hold the lock", func() bool {
		data, _ := os.ReadFile(marks)
		return len(data) > 0
	}); err != nil {
		return err
	}
	var waiters []*running
	for range handoffWaiters {
		w, err := t.start(invocation{args: []string{"run", "--", t.helper, "stamp", marks, "-sleep", waiterHold.String()}, env: env})
		if err != nil {
			return err
		}
		waiters = append(waiters, w)
		all = append(all, w)
	}
	if err := waitUntil(60*time.Second, "every waiter to wait for the lock", func() bool {
		return countWaiting(ctx, kind, db, url, waiters) == handoffWaiters
	}); err != nil {
		return err
	}

	// Watch them wait.
	sampleCPU := func() ([]time.Duration, time.Time, error) {
		at := time.Now()
		out := make([]time.Duration, len(waiters))
		for i, w := range waiters {
			var err error
			if out[i], err = cpuTime(w.pid()); err != nil {
				return nil, at, err
			}
		}
		return out, at, nil
	}
	c0, t0, err := sampleCPU()
	if err != nil {
		return err
	}
	time.Sleep(time.Second / 2)
	if kind == "postgresql" {
		n, err := pgWaitersInTransaction(ctx, url, db)
		if err != nil {
			return err
		}
		st.snapshots = append(st.snapshots, n)
	} else {
		n, err := myOpenTransactions(ctx, url)
		if err != nil {
			return err
		}
		st.transaction = append(st.transaction, n)
	}
	time.Sleep(time.Until(t0.Add(time.Second)))
	c1, t1, err := sampleCPU()
	if err != nil {
		return err
	}
	time.Sleep(time.Until(t0.Add(waitWindow)))
	c2, t2, err := sampleCPU()
	if err != nil {
		return err
	}
	for i := range waiters {
		st.waitCPU = append(st.waitCPU, float64(c2[i]-c0[i])/float64(t2.Sub(t0)))
		st.waitCPU1 = append(st.waitCPU1, float64(c1[i]-c0[i])/float64(t1.Sub(t0)))
		st.waitCPU2 = append(st.waitCPU2, float64(c2[i]-c1[i])/float64(t2.Sub(t1)))
	}

	// Release, and let the lock pass down the queue.
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		return err
	}
	byPid := map[int]*outcome{}
	for _, r := range all {
		o, err := r.wait()
		if err != nil {
			return err
		}
		if o.status != 0 {
			return fmt.Errorf("a runner exited %d:\n%s", o.status, tail(o.stderr, 2000))
		}
		byPid[o.pid] = o
	}
	cs, err := readMarks(marks)
	if err != nil {
		return err
	}
	if len(cs) != handoffWaiters+1 {
		return fmt.Errorf("%d critical sections, want %d", len(cs), handoffWaiters+1)
	}
	for i := 1; i < len(cs); i++ {
		prev, next := cs[i-1], cs[i]
		st.total = append(st.total, next.start.Sub(prev.end))
		po, no := byPid[prev.ppid], byPid[next.ppid]
		if po == nil || no == nil {
			return fmt.Errorf("a command's migrun is unknown (ppid %d, %d)", prev.ppid, next.ppid)
		}
		released, acquired := po.logTime("lock released"), no.logTime("lock acquired")
		if released.IsZero() || acquired.IsZero() {
			return fmt.Errorf("missing lock log lines:\n%s\n%s", po.stderr, no.stderr)
		}
		st.release = append(st.release, released.Sub(prev.end))
		st.wake = append(st.wake, acquired.Sub(released))
		st.exec = append(st.exec, next.start.Sub(acquired))
	}
	for _, c := range cs[1:] {
		if o := byPid[c.ppid]; o != nil {
			st.processCPU = append(st.processCPU, o.cpu()-c.cpu)
		}
	}
	return nil
}

// countWaiting counts the runners that are waiting for the lock: on
// PostgreSQL those that logged so (after a failed try, before waiting for
// the NOTIFY); on MariaDB the sessions blocked in GET_LOCK (state "User lock"; migrun logs
// its waiting only when the first 5 s GET_LOCK times out).
func countWaiting(ctx context.Context, kind, db, url string, waiters []*running) int {
	if kind == "postgresql" {
		n := 0
		for _, w := range waiters {
			if w.stderr.Contains("lock is held by another runner; waiting") {
				n++
			}
		}
		return n
	}
	conn, err := openMySQL(url)
	if err != nil {
		return -1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND STATE = 'User lock'", db).Scan(&n); err != nil {
		return -1
	}
	return n
}

// pgWaitersInTransaction counts migrun's backends in db that hold a
// snapshot (backend_xmin), a transaction id, or an open transaction.
// migrun's lock sessions are named "migrun <host> <pid>" (issue 13), its
// command's "migrun command <host> <pid>".
// Only the holder may be in a transaction, and in session mode not even it.
func pgWaitersInTransaction(ctx context.Context, url, db string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgConnect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n, total int
	err = conn.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE backend_xmin IS NOT NULL OR backend_xid IS NOT NULL OR state LIKE 'idle in transaction%' OR xact_start IS NOT NULL),
		count(*)
		FROM pg_stat_activity WHERE datname = $1
		  AND application_name LIKE 'migrun %' AND application_name NOT LIKE 'migrun command %'`, db).Scan(&n, &total)
	if err != nil {
		return 0, err
	}
	if total != handoffWaiters+1 {
		return 0, fmt.Errorf("pg_stat_activity shows %d migrun sessions, want %d", total, handoffWaiters+1)
	}
	return n, nil
}

// myOpenTransactions counts InnoDB's open transactions on the server.
func myOpenTransactions(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := openMySQL(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var n int
	err = conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.INNODB_TRX").Scan(&n)
	return n, err
}

// helperStart is the median wall time of the helper doing nothing: what
// starting the command costs in every hand-off.
var helperStartCache time.Duration

func helperStart(t *tools) time.Duration {
	if helperStartCache != 0 {
		return helperStartCache
	}
	var ds []time.Duration
	for range 21 {
		o, err := t.run(invocation{path: t.helper, args: []string{"nop"}})
		if err != nil {
			return 0
		}
		ds = append(ds, o.wall())
	}
	helperStartCache = durations(ds).medianDur()
	return helperStartCache
}
