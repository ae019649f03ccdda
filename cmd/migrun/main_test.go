package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/report"
)

// TestMain doubles as migrun itself when MIGRUN_AS_MAIN is set, so tests
// can run it as a process of its own (signal dispositions are per process).
func TestMain(m *testing.M) {
	if os.Getenv("MIGRUN_AS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// mainResult is what one in-process Main left behind.
type mainResult struct {
	status         int
	stdout, stderr string
}

func runMainWith(t *testing.T, env map[string]string, args ...string) mainResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	status := Main(context.Background(), args, env, &stdout, &stderr)
	return mainResult{status, stdout.String(), stderr.String()}
}

func TestMainDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    string // in stdout
		wantErr    string // in stderr
	}{
		{name: "alone: usage, and nothing run", args: nil, wantStatus: 64, wantErr: "Usage:"},
		{name: "unknown command", args: []string{"migrate"}, wantStatus: 64, wantErr: `unknown command "migrate"`},
		{name: "version", args: []string{"version"}, wantStatus: 0, wantOut: "migrun "},
		{name: "help", args: []string{"help"}, wantStatus: 0, wantOut: "migrun wait [flags]"},
		{name: "help of a command", args: []string{"help", "wait"}, wantStatus: 0, wantOut: "--wait-timeout"},
		{name: "help of an unknown command", args: []string{"help", "frob"}, wantStatus: 64, wantErr: `unknown command "frob"`},
		{name: "run --help", args: []string{"run", "--help"}, wantStatus: 0, wantOut: "--lock-timeout"},
		{name: "wait --help shows wait's own help", args: []string{"wait", "--help"}, wantStatus: 0, wantOut: "Usage: migrun wait"},
		{name: "a bad setting", args: []string{"run", "--lock-timeout", "5"}, wantStatus: 64, wantErr: `migrun: --lock-timeout="5": a duration needs a unit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runMainWith(t, map[string]string{"DATABASE_URL": pgURL}, tt.args...)
			if res.status != tt.wantStatus || !strings.Contains(res.stdout, tt.wantOut) || !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("Main(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, %q in stdout, %q in stderr", tt.args, res.status, res.stdout, res.stderr, tt.wantStatus, tt.wantOut, tt.wantErr)
			}
		})
	}
}

// TestHelpJSON: tools (the deploy tests) read every command's settings
// from the binary instead of parsing its source.
func TestHelpJSON(t *testing.T) {
	res := runMainWith(t, nil, "help", "--json")
	var doc struct {
		Commands []struct {
			Name     string
			Settings []struct{ Env, Flag string }
		}
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.status != 0 {
		t.Fatalf("help --json: %d %v\n%s", res.status, err, res.stdout)
	}
	found := map[string]bool{}
	for _, c := range doc.Commands {
		for _, s := range c.Settings {
			found[c.Name+" "+s.Env+" --"+s.Flag] = true
		}
	}
	for _, want := range []string{"run MIGRUN_LOCK_TIMEOUT --lock-timeout", "wait MIGRUN_WAIT_TIMEOUT --wait-timeout", "run SLACK_WEBHOOK_URL --slack-webhook-url",
		"status MIGRUN_STATUS_FORMAT --format", "status MIGRUN_STATUS_NOTIFY_TEST --notify-test", "status MIGRUN_LOCK_TIMEOUT --lock-timeout"} {
		if !found[want] {
			t.Errorf("help --json lacks %q", want)
		}
	}
}

// TestRunEndToEnd runs `migrun run` through Main with a sqlite3 file lock:
// the command's output, status and the termination log.
func TestRunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	term := filepath.Join(dir, "termination-log")
	env := map[string]string{
		"DATABASE_URL":           "sqlite3:" + filepath.Join(dir, "db.sqlite3"),
		"MIGRUN_TERMINATION_LOG": term,
		"PATH":                   os.Getenv("PATH"),
	}
	tests := []struct {
		name       string
		command    string
		wantStatus int
		wantTerm   string
	}{
		{"succeeds", `echo "== 20240101000000 CreateUsers: migrated (0.0046s) ==="`, 0, "migrun: succeeded, exit status 0"},
		{"fails", "echo boom >&2; exit 3", 3, "migrun: failed (exit 3), exit status 3"},
		{"killed", "kill -TERM $$", 143, "migrun: killed by SIGTERM, exit status 143"},
		{"prints nothing", "true", 0, "No DB migration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runMainWith(t, env, "run", "--", "sh", "-c", tt.command)
			got, _ := os.ReadFile(term)
			if res.status != tt.wantStatus || !strings.Contains(string(got), tt.wantTerm) {
				t.Errorf("status %d, termination log %q; want %d, %q\nstderr: %s", res.status, got, tt.wantStatus, tt.wantTerm, res.stderr)
			}
		})
	}
	res := runMainWith(t, env, "run", "--", "no-such-command-migrun")
	if res.status != 127 {
		t.Errorf("a missing command: status %d, want 127", res.status)
	}
}

// TestClosedOutputDoesNotKill: with stdout and stderr closed by their
// reader (a log collector gone), migrun's writes must not kill it with
// SIGPIPE: SIGPIPE is caught in the background (signalWatch), and
// migrun's own writes wait for it (the help, printed at once, is the
// first of them). The run still ends with the command's status and its
// termination log, and a configuration error with its own status.
func TestClosedOutputDoesNotKill(t *testing.T) {
	term := filepath.Join(t.TempDir(), "termination-log")
	command := []string{"--", "sh", "-c", "echo out; echo err >&2; exit 3"}
	tests := []struct {
		name       string
		args       []string
		env        string
		wantStatus int
		wantTerm   string
	}{
		{"help", []string{"--help"}, "", 0, ""},
		{"command fails", command, "", 3, "failed (exit 3)"},
		{"configuration error", command, "MIGRUN_LOCK_TIMEOUT=soon", report.ExitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Several runs: the first write races the handler's setup.
			for range 5 {
				os.Remove(term)
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				r.Close()
				cmd := exec.Command(os.Args[0], append([]string{"run"}, tt.args...)...)
				cmd.Env = append(os.Environ(), "MIGRUN_AS_MAIN=1", "MIGRUN_LOCK_MODE=none", "MIGRUN_RUBY_SYNC=false",
					"MIGRUN_TERMINATION_LOG="+term, tt.env)
				cmd.Stdout, cmd.Stderr = w, w
				err = cmd.Run()
				w.Close()
				var exitErr *exec.ExitError
				if err != nil && !errors.As(err, &exitErr) {
					t.Fatal(err)
				}
				got, _ := os.ReadFile(term)
				if status := cmd.ProcessState.ExitCode(); status != tt.wantStatus || !strings.Contains(string(got), tt.wantTerm) {
					t.Fatalf("%v, termination log %q; want exit status %d, %q", cmd.ProcessState, got, tt.wantStatus, tt.wantTerm)
				}
			}
		})
	}
}

// TestNohupKeepsSIGHUPIgnored: under nohup (SIGHUP inherited as ignored)
// migrun must leave SIGHUP ignored, for itself and the command, instead of
// catching it and forwarding it.
func TestNohupKeepsSIGHUPIgnored(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("nohup is not installed")
	}
	started := filepath.Join(t.TempDir(), "started")
	cmd := exec.Command(nohup, os.Args[0], "run", "--", "sh", "-c", "touch "+started+"; sleep 1; echo finished")
	cmd.Env = append(os.Environ(), "MIGRUN_AS_MAIN=1", "MIGRUN_LOCK_MODE=none", "MIGRUN_RUBY_SYNC=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, started)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if err != nil || !strings.Contains(out.String(), "finished") {
		t.Errorf("migrun under nohup: %v (want exit 0, the command finished)\n%s", err, out.String())
	}
}

// TestWaitStoppedBySignal: a signal while `wait` waits exits 128+N, and the
// signal is read without a data race (the race detector checks).
func TestWaitStoppedBySignal(t *testing.T) {
	port := closedPort(t)
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(context.Background(), []string{"wait"}, map[string]string{
			"DATABASE_URL":           fmt.Sprintf("postgres://u:p@127.0.0.1:%d/db", port),
			"MIGRUN_CONNECT_TIMEOUT": "5m",
		}, &bytes.Buffer{}, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "waiting") {
		if time.Now().After(deadline) {
			t.Fatalf("wait never started retrying:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case status := <-done:
		if status != 143 {
			t.Errorf("wait stopped by SIGTERM exited %d, want 143:\n%s", status, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("wait did not stop on SIGTERM:\n%s", stderr.String())
	}
}

// TestREADMEExitStatuses: the README's exit-status table says what
// report.ExitStatus decides, for every fixed status.
func TestREADMEExitStatuses(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []report.Outcome{report.NotFound, report.NotExecutable, report.LockTimeout, report.LockLost,
		report.Unreachable, report.ConfigError, report.InternalError, report.StillPending} {
		status := report.Result{Outcome: o}.ExitStatus()
		if !bytes.Contains(readme, []byte(fmt.Sprintf("\n| %d |", status))) {
			t.Errorf("README's exit-status table has no row for %d (%s)", status, o)
		}
	}
	for _, e := range exitStatuses {
		if !bytes.Contains(readme, []byte("| "+e.Status+" |")) {
			t.Errorf("README's exit-status table has no row for %s", e.Status)
		}
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// syncBuffer is a bytes.Buffer safe to read while another goroutine writes.
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

// TestRunStoppedWhileWaiting: the signals `run` forwards are watched (set
// up in the background since it started) by the time it says it waits
// for the lock (lock.Options.BeforeWait): a SIGTERM from then on stops the
// wait and exits 143 with the report, instead of killing migrun.
func TestRunStoppedWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	dbURL := "sqlite3:" + filepath.Join(dir, "db.sqlite3")
	holdLock(t, dbURL)
	term := filepath.Join(dir, "termination-log")
	cmd := exec.Command(os.Args[0], "run", "--", "true")
	cmd.Env = append(os.Environ(), "MIGRUN_AS_MAIN=1", "DATABASE_URL="+dbURL, "MIGRUN_TERMINATION_LOG="+term)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	// Its signals are watched before it says it waits (signalWatch).
	for !strings.Contains(stderr.String(), "lock is held by another runner; waiting") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("run never started waiting for the lock:\n%s", stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	got, _ := os.ReadFile(term)
	if cmd.ProcessState.ExitCode() != 143 || !strings.Contains(string(got), "SIGTERM") {
		t.Errorf("run stopped by SIGTERM while waiting: %v (want exit 143 and a report)\ntermination log: %s\nstderr: %s", err, got, stderr.String())
	}
}

// holdLock takes the lock `run` takes for the database at dbURL, as
// another runner would, until the test ends.
func holdLock(t *testing.T, dbURL string) {
	t.Helper()
	u, err := dburl.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	held, err := lock.New(u, lock.Options{Name: u.Database})
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Unlock(context.Background()) })
}
