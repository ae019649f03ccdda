package integration

// Helpers of the fault tests (fault_*_test.go): lock cases and fault
// settings, commands that leave timestamped marks, runs on a netfault node,
// and the checks on what runs reported.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/netfault"
	"github.com/migrun/migrun/internal/testdb"
)

// lockCase is one way of locking: a server kind and a lock mode.
type lockCase struct {
	kind string // testdb.KindPostgreSQL or testdb.KindMariaDB
	mode string // "session" or "transaction"
}

// lockCases are every lock mode on every server: PostgreSQL session and
// transaction, MariaDB session.
var lockCases = []lockCase{
	{testdb.KindPostgreSQL, "session"},
	{testdb.KindPostgreSQL, "transaction"},
	{testdb.KindMariaDB, "session"},
}

func (c lockCase) String() string {
	if c.kind == testdb.KindMariaDB {
		return c.kind
	}
	return c.kind + "/" + c.mode
}

func (c lockCase) env() map[string]string {
	return map[string]string{"MIGRUN_LOCK_MODE": c.mode}
}

// faults are the settings of how migrun meets a lost holder; a zero field
// leaves migrun's default.
type faults struct {
	dead      time.Duration // MIGRUN_DEAD_HOLDER_TIMEOUT (D), default 30s
	keepAlive time.Duration // MIGRUN_KEEPALIVE_INTERVAL (K), default 5s
	stop      time.Duration // MIGRUN_STOP_TIMEOUT (G), default 10s
}

// Defaults of the settings, as migrun documents them.
const (
	defaultDeadHolder = 30 * time.Second
	defaultStop       = 10 * time.Second
	defaultKeepAlive  = 5 * time.Second
)

// shortFaults keep most rows fast: D=12s, K=1s, G=3s.
var shortFaults = faults{dead: 12 * time.Second, keepAlive: time.Second, stop: 3 * time.Second}

func (f faults) String() string {
	if f == (faults{}) {
		return "defaults"
	}
	return fmt.Sprintf("D=%s", f.deadHolder())
}

// deadHolder is D.
func (f faults) deadHolder() time.Duration {
	if f.dead == 0 {
		return defaultDeadHolder
	}
	return f.dead
}

// stopTimeout is G.
func (f faults) stopTimeout() time.Duration {
	if f.stop == 0 {
		return defaultStop
	}
	return f.stop
}

// env sets all three, the defaults included: the other integration tests'
// runs get short ones (invocation.start), and a fault row's runners must
// all share the row's.
func (f faults) env() map[string]string {
	keepAlive := f.keepAlive
	if keepAlive == 0 {
		keepAlive = defaultKeepAlive
	}
	return map[string]string{
		"MIGRUN_DEAD_HOLDER_TIMEOUT": f.deadHolder().String(),
		"MIGRUN_KEEPALIVE_INTERVAL":  keepAlive.String(),
		"MIGRUN_STOP_TIMEOUT":        f.stopTimeout().String(),
	}
}

// merge is the union of envs; later ones win.
func merge(envs ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, env := range envs {
		for k, v := range env {
			out[k] = v
		}
	}
	return out
}

// concurrently runs f for every row as a subtest, all at once. Not
// t.Parallel: -parallel (GOMAXPROCS, 2 on CI) would run two at a time,
// and these rows spend their time waiting for timeouts, not computing.
func concurrently[R fmt.Stringer](t *testing.T, rows []R, f func(t *testing.T, row R)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, row := range rows {
		wg.Go(func() { t.Run(row.String(), func(t *testing.T) { f(t, row) }) })
	}
	wg.Wait()
}

// --- runs -------------------------------------------------------------------

// startFault starts migrun, on node unless it is nil. Whatever happens to
// the test, the run is continued (if frozen) and killed at its end.
func (inv invocation) startFault(t *testing.T, node *netfault.Node) *running {
	t.Helper()
	if node == nil {
		r := inv.start(t)
		t.Cleanup(func() { r.stopForGood() })
		return r
	}
	// As invocation.start, with the program run on the node.
	term := filepath.Join(t.TempDir(), "termination-log")
	cmd := node.Command(migrunBin, inv.args...)
	cmd.Dir = inv.dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"MIGRUN_TERMINATION_LOG=" + term,
		"MIGRUN_CONNECT_TIMEOUT=20s",
		"MIGRUN_LOCK_TIMEOUT=5m",
	}
	for k, v := range inv.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	r := &running{cmd: cmd, term: term}
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start migrun on %s: %v", node, err)
	}
	t.Cleanup(func() { r.stopForGood() })
	return r
}

// stopForGood continues a frozen run and kills it; its command dies with
// it (Pdeathsig). Harmless on a run that has ended.
func (r *running) stopForGood() {
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
}

// waitBounded waits for the run until deadline; a run still going then is
// killed, and the test fails, but goes on to check what the run did.
func (r *running) waitBounded(t *testing.T, name string, deadline time.Time) result {
	t.Helper()
	timer := time.AfterFunc(max(time.Until(deadline), time.Second), func() {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		_ = r.cmd.Process.Kill()
	})
	res := r.wait(t)
	if !timer.Stop() {
		t.Errorf("%s still running at its deadline, killed:\n%s", name, res.stderr)
		res.status = -1
	}
	return res
}

// waitForWaiting waits until the run says it waits for the lock. A run
// that takes the lock instead, when another runner's command should hold
// it, fails the test, which goes on to show why (a lost lock, an overlap).
func waitForWaiting(t *testing.T, name string, r *running) {
	t.Helper()
	deadline := time.Now().Add(timeoutLong)
	for time.Now().Before(deadline) {
		log := r.stderr.String()
		if strings.Contains(log, "waiting") {
			return
		}
		if strings.Contains(log, "lock acquired") {
			t.Errorf("%s did not wait: the lock was free while another runner's command should have held it:\n%s", name, log)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not start waiting for the lock in %s:\n%s", name, timeoutLong, r.stderr.String())
}

// lostLock says whether a run reported its held lock lost, in its log or
// termination log. (A waiter's "lock connection lost while waiting" is no
// lost lock: it held none.)
func lostLock(res result) bool {
	return strings.Contains(strings.ToLower(res.stderr+res.termination), "lock lost")
}

// assertFenced checks what a holder that lost its lock must report: exit
// 75, "lock lost" and "command stopped" in the termination log, the loss
// in its log.
func assertFenced(t *testing.T, name string, res result) {
	t.Helper()
	term := strings.ToLower(res.termination)
	if res.status != 75 || !strings.Contains(term, "lock lost") || !strings.Contains(term, "command stopped") ||
		!strings.Contains(strings.ToLower(res.stderr), "lock lost") {
		t.Errorf("%s exited %d; want 75, with the lock lost and the command stopped in its termination log and log:\ntermination log:\n%s\nstderr:\n%s",
			name, res.status, res.termination, res.stderr)
	}
}

// assertClean checks a run that must have exited 0 without losing its lock.
func assertClean(t *testing.T, name string, res result) {
	t.Helper()
	if res.status != 0 || lostLock(res) {
		t.Errorf("%s exited %d (want 0, lock never lost):\ntermination log:\n%s\nstderr:\n%s", name, res.status, res.termination, res.stderr)
	}
}

// --- marks ------------------------------------------------------------------

// marked is one runner's command and the file where it leaves marks:
// "start <ns>", "alive <ns>", "end <ns>", from the command's own clock
// reading (date +%s%N), so the test sees when it really ran.
type marked struct {
	name    string
	marks   string
	pidFile string // holders: the command's pid, which is its process group
	release string // holders: created to end the command
}

func newMarked(t *testing.T, name string) marked {
	dir := t.TempDir()
	return marked{name: name, marks: filepath.Join(dir, "marks"), pidFile: filepath.Join(dir, "pid"), release: filepath.Join(dir, "release")}
}

// holderArgs are `migrun run` arguments whose command marks its start,
// then marks "alive" every 50 ms until m.release exists, then its end: a
// command killed in between leaves its last alive mark at most ~50 ms
// (plus one date) before it died.
func (m marked) holderArgs() []string {
	return []string{"run", "--", "sh", "-c", fmt.Sprintf(
		`echo $$ > %[3]s.tmp && mv %[3]s.tmp %[3]s; echo "start $(date +%%s%%N)" >> %[1]s; `+
			`while [ ! -e %[2]s ]; do echo "alive $(date +%%s%%N)" >> %[1]s; sleep 0.05; done; echo "end $(date +%%s%%N)" >> %[1]s`,
		m.marks, m.release, m.pidFile)}
}

// waiterArgs are `migrun run` arguments whose command marks its start,
// sleeps, and marks its end.
func (m marked) waiterArgs(seconds string) []string {
	return []string{"run", "--", "sh", "-c", fmt.Sprintf(
		`echo "start $(date +%%s%%N)" >> %[1]s; sleep %[2]s; echo "end $(date +%%s%%N)" >> %[1]s`, m.marks, seconds)}
}

// waitStarted waits until the command has marked its start.
func (m marked) waitStarted(t *testing.T) {
	t.Helper()
	waitFor(t, m.name+"'s command to start", timeoutLong, func() bool {
		data, _ := os.ReadFile(m.marks)
		return strings.HasPrefix(string(data), "start ")
	})
}

// finish lets a holder's command end.
func (m marked) finish(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(m.release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pgid is the holder command's process group, once it has started.
func (m marked) pgid(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(m.pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// span is when a command ran, as its marks say.
type span struct {
	name        string
	first, last time.Time
	marks       int
	ended       bool // it marked its end
}

func (s span) ran() bool { return s.marks > 0 }

// span reads the command's marks; a command that never ran has none.
func (m marked) span(t *testing.T) span {
	t.Helper()
	s := span{name: m.name}
	data, err := os.ReadFile(m.marks)
	if errors.Is(err, os.ErrNotExist) {
		return s
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		kind, at, _ := strings.Cut(line, " ")
		ns, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			// A command killed in the middle of a write may leave half a
			// line; it is the last and says nothing more.
			continue
		}
		ts := time.Unix(0, ns)
		if s.marks == 0 || ts.Before(s.first) {
			s.first = ts
		}
		if ts.After(s.last) {
			s.last = ts
		}
		s.marks++
		s.ended = s.ended || kind == "end"
	}
	return s
}

// assertSequential checks that the commands that ran never ran at the same
// time: sorted by start, each one's last mark comes before the next one's
// first. (A killed command's end is its last mark, within ~50 ms.)
func assertSequential(t *testing.T, spans ...span) {
	t.Helper()
	var ran []span
	for _, s := range spans {
		if s.ran() {
			ran = append(ran, s)
		}
	}
	slices.SortFunc(ran, func(a, b span) int { return a.first.Compare(b.first) })
	for i := 1; i < len(ran); i++ {
		if !ran[i-1].last.Before(ran[i].first) {
			t.Errorf("commands overlap: %s", describeSpans(ran))
			return
		}
	}
}

// describeSpans shows when each command ran, relative to the first start.
func describeSpans(spans []span) string {
	if len(spans) == 0 {
		return "no command ran"
	}
	base := spans[0].first
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s: %.3fs .. %.3fs (%d marks, ended: %v)", s.name,
			s.first.Sub(base).Seconds(), s.last.Sub(base).Seconds(), s.marks, s.ended)
	}
	return b.String()
}

// --- servers ------------------------------------------------------------------

// startServers starts private servers at once, one per entry of opts,
// stopped at the test's end. Like testdb.NewServer, but started
// concurrently: a MariaDB start costs seconds.
func startServers(t *testing.T, kinds []string, opts testdb.Options) []*testdb.Server {
	t.Helper()
	servers := make([]*testdb.Server, len(kinds))
	errs := make([]error, len(kinds))
	var wg sync.WaitGroup
	for i, kind := range kinds {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if kind == testdb.KindPostgreSQL {
				servers[i], errs[i] = testdb.StartPostgres(ctx, opts)
			} else {
				servers[i], errs[i] = testdb.StartMariaDB(ctx, opts)
			}
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Logf("stop %s: %v", s.Kind(), err)
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("database server unavailable: %v", err)
		}
		t.Skipf("database server unavailable: %v", err)
	}
	return servers
}

// sharedServer is the shared server of a kind.
func sharedServer(t *testing.T, kind string) *testdb.Server {
	t.Helper()
	if kind == testdb.KindPostgreSQL {
		return testdb.Postgres(t)
	}
	return testdb.MariaDB(t)
}

// durationFromEnv reads a duration the environment may override.
func durationFromEnv(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q is not a duration", name, v)
	}
	return d
}

// since is a duration for messages, rounded; "never" for a zero to.
func since(from, to time.Time) string {
	if to.IsZero() {
		return "never"
	}
	return to.Sub(from).Round(10 * time.Millisecond).String()
}
