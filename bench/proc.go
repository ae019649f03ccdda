package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tools are the binaries a run measures: migrun as `make build` makes it,
// the helper command, and the limit program (bench/limit).
type tools struct {
	migrun string
	helper string
	limit  string
	tmp    string // scratch space of this run
}

// invocation is one process to run and time.
type invocation struct {
	path   string            // the program; migrun when empty
	args   []string          // without the program name
	env    map[string]string // added to (and overriding) baseEnv
	dir    string
	stdout io.Writer // nil: /dev/null
	stdin  io.Reader
}

// baseEnv is a minimal environment: JSON logs (their timestamps show
// where the time goes) and generous timeouts.
func baseEnv() map[string]string {
	return map[string]string{
		"PATH":                   os.Getenv("PATH"),
		"HOME":                   os.Getenv("HOME"),
		"LANG":                   "C.UTF-8",
		"MIGRUN_LOG_FORMAT":      "json",
		"MIGRUN_CONNECT_TIMEOUT": "30s",
		"MIGRUN_LOCK_TIMEOUT":    "10m",
	}
}

// outcome is how one process went.
type outcome struct {
	pid     int
	started time.Time // just before fork
	ended   time.Time // just after wait4 returned
	status  int
	rusage  syscall.Rusage // from wait4: the process and the children it reaped
	stderr  []byte
	logs    []logLine
}

func (o *outcome) wall() time.Duration { return o.ended.Sub(o.started) }

// cpu is the CPU time wait4 reported: the process's own plus that of the
// children it waited for.
func (o *outcome) cpu() time.Duration {
	return time.Duration(o.rusage.Utime.Nano() + o.rusage.Stime.Nano())
}

// running is a started process.
type running struct {
	cmd     *exec.Cmd
	started time.Time
	stderr  *lockedBuffer
}

func (t *tools) start(inv invocation) (*running, error) {
	path := inv.path
	if path == "" {
		path = t.migrun
	}
	cmd := exec.Command(path, inv.args...)
	env := baseEnv()
	for k, v := range inv.env {
		env[k] = v
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = inv.dir
	cmd.Stdout = inv.stdout
	cmd.Stdin = inv.stdin
	r := &running{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = r.stderr
	r.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(path), err)
	}
	return r, nil
}

func (r *running) pid() int { return r.cmd.Process.Pid }

func (r *running) wait() (*outcome, error) {
	err := r.cmd.Wait()
	ended := time.Now()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return nil, err
	}
	o := &outcome{
		pid:     r.cmd.Process.Pid,
		started: r.started,
		ended:   ended,
		status:  r.cmd.ProcessState.ExitCode(),
		stderr:  r.stderr.Bytes(),
	}
	if ru, ok := r.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		o.rusage = *ru
	}
	o.logs = parseLogs(o.stderr)
	return o, nil
}

// run runs inv to the end; a non-zero exit is an error.
func (t *tools) run(inv invocation) (*outcome, error) {
	r, err := t.start(inv)
	if err != nil {
		return nil, err
	}
	o, err := r.wait()
	if err != nil {
		return nil, err
	}
	if o.status != 0 {
		return o, fmt.Errorf("%s %s exited %d:\n%s", filepath.Base(r.cmd.Path), strings.Join(inv.args, " "), o.status, tail(o.stderr, 3000))
	}
	return o, nil
}

// logLine is one of migrun's JSON log lines.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

func parseLogs(stderr []byte) []logLine {
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l logLine
		if json.Unmarshal(line, &l) == nil && !l.Time.IsZero() {
			out = append(out, l)
		}
	}
	return out
}

// logTime is when migrun logged msg (its first such line), or the zero time.
func (o *outcome) logTime(msg string) time.Time {
	for _, l := range o.logs {
		if l.Msg == msg {
			return l.Time
		}
	}
	return time.Time{}
}

// lockedBuffer collects a process's stderr, readable while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func (l *lockedBuffer) Contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.b.Bytes(), []byte(s))
}

func tail(b []byte, n int) string {
	if len(b) > n {
		return "..." + string(b[len(b)-n:])
	}
	return string(b)
}

// --- /proc ------------------------------------------------------------------

// cpuTime is the CPU time all threads of pid have used so far, in
// nanoseconds, from the scheduler's own accounting (/proc/PID/task/*/schedstat),
// which is exact where /proc/PID/stat counts clock ticks.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil {
			total += n
		}
	}
	return time.Duration(total), nil
}

// procStatus reads a "Vm..." field of /proc/PID/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// waitUntil polls cond every few milliseconds until it holds or timeout passes.
func waitUntil(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}
