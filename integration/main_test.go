// Package integration runs the migrun binary against real PostgreSQL and
// MariaDB servers (throwaway ones, started by internal/testdb) and a real
// Rails app (testdata/railsapp).
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/railsapp"
	"github.com/migrun/migrun/internal/testdb"
)

// migrunBin is the binary under test, built once by TestMain, as is
// maxrssBin, which measures a program's own peak RSS (testdata/maxrss).
var migrunBin, maxrssBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "migrun-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	migrunBin = filepath.Join(dir, "migrun")
	maxrssBin = filepath.Join(dir, "maxrss")
	for bin, pkg := range map[string]string{migrunBin: "github.com/migrun/migrun/cmd/migrun", maxrssBin: "./testdata/maxrss"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := testdb.Run(m)
	railsapp.Remove()
	os.RemoveAll(dir) // os.Exit skips deferred calls
	os.Exit(code)
}

// result is what one migrun run left behind.
type result struct {
	status         int
	stdout, stderr string
	termination    string // the termination log
}

// all is everything the run wrote, for leak checks.
func (r result) all() string { return r.stdout + r.stderr + r.termination }

// invocation is one migrun run to make.
type invocation struct {
	env  map[string]string // added to a minimal environment
	args []string
	dir  string
}

// start starts migrun; wait with (*run).wait.
func (inv invocation) start(t *testing.T) *running {
	t.Helper()
	term := filepath.Join(t.TempDir(), "termination-log")
	args := inv.args
	if args == nil {
		args = []string{"run"} // the default command: bundle exec rails db:migrate (an empty, non-nil args is migrun alone)
	}
	cmd := exec.Command(migrunBin, args...)
	cmd.Dir = inv.dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"MIGRUN_TERMINATION_LOG=" + term,
		"MIGRUN_CONNECT_TIMEOUT=20s",
		"MIGRUN_LOCK_TIMEOUT=5m",
		// The throwaway servers are young: a runner on a server up for
		// less than the takeover guard (D − 2 s) waits it out. A short
		// dead-holder bound keeps that wait short, yet leaves a holder
		// about 7 s without an answer before it must stop its command, so
		// that a machine loaded to a standstill (fifty runners on two
		// cores beside the rest of the suite) does not pass for a lost
		// lock (with 7s it had 2.7 s); the fault tests set their own.
		"MIGRUN_DEAD_HOLDER_TIMEOUT=12s",
		"MIGRUN_KEEPALIVE_INTERVAL=1s",
		"MIGRUN_STOP_TIMEOUT=1s",
	}
	for k, v := range inv.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	r := &running{cmd: cmd, term: term}
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start migrun: %v", err)
	}
	return r
}

// run runs migrun to the end.
func (inv invocation) run(t *testing.T) result {
	t.Helper()
	return inv.start(t).wait(t)
}

type running struct {
	cmd            *exec.Cmd
	term           string
	stdout, stderr syncBuffer
}

func (r *running) wait(t *testing.T) result {
	t.Helper()
	err := r.cmd.Wait()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("wait for migrun: %v", err)
	}
	term, _ := os.ReadFile(r.term)
	return result{
		status:      r.cmd.ProcessState.ExitCode(),
		stdout:      r.stdout.String(),
		stderr:      r.stderr.String(),
		termination: string(term),
	}
}

// waitWithin is wait, but a run still going after d is killed and fails
// the test: a hang is a finding, not a stuck test binary.
func (r *running) waitWithin(t *testing.T, d time.Duration) result {
	t.Helper()
	timer := time.AfterFunc(d, func() { _ = r.cmd.Process.Kill() })
	res := r.wait(t)
	if !timer.Stop() {
		t.Fatalf("migrun still running after %s, killed:\n%s", d, res.stderr)
	}
	return res
}

// runConcurrently starts every invocation at once and waits for all of them.
func runConcurrently(t *testing.T, invs ...invocation) []result {
	t.Helper()
	started := make([]*running, len(invs))
	for i, inv := range invs {
		started[i] = inv.start(t)
	}
	results := make([]result, len(started))
	for i, r := range started {
		results[i] = r.waitWithin(t, 5*timeoutLong)
	}
	return results
}

// copies is n copies of inv, for runConcurrently.
func copies(inv invocation, n int) []invocation {
	invs := make([]invocation, n)
	for i := range invs {
		invs[i] = inv
	}
	return invs
}

// assertSucceeded fails the test for every run that did not exit 0.
func assertSucceeded(t *testing.T, results []result) {
	t.Helper()
	for i, res := range results {
		if res.status != 0 {
			t.Errorf("runner %d exited %d:\n%s", i, res.status, res.stderr)
		}
	}
}

// holdLock starts a run with env whose command holds the lock until
// release is called, and returns once the command runs.
func holdLock(t *testing.T, env map[string]string) (holder *running, release func()) {
	t.Helper()
	dir := t.TempDir()
	held, releaseFile := filepath.Join(dir, "held"), filepath.Join(dir, "release")
	holder = invocation{env: env, args: []string{"run", "--", "sh", "-c",
		fmt.Sprintf("touch %s; while [ ! -e %s ]; do sleep 0.05; done", held, releaseFile)}}.start(t)
	waitFor(t, "the holder's command to start", timeoutLong, func() bool { _, err := os.Stat(held); return err == nil })
	return holder, func() {
		if err := os.WriteFile(releaseFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while the process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes: for states that
// no process signals (a file appearing, a server's view of its sessions).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// servers are the database kinds every locking test runs against.
func servers(t *testing.T) map[string]*testdb.Server {
	return map[string]*testdb.Server{
		"postgresql": testdb.Postgres(t),
		"mariadb":    testdb.MariaDB(t),
	}
}

func assertNoSecret(t *testing.T, secret string, results ...result) {
	t.Helper()
	for i, r := range results {
		if strings.Contains(r.all(), secret) {
			t.Errorf("run %d printed the password:\n%s", i, r.all())
		}
	}
}
