package runner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a small migrun instead of running
// the tests, for what needs a process of its own (being killed, a closed
// stdout).
const helperEnv = "MIGRUN_RUNNER_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

func runHelper(mode string) int {
	switch mode {
	case "pdeathsig":
		// Starts a long command, says which, and waits to be killed.
		p, err := Start([]string{"sleep", "60"}, nil, Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Printf("pid=%d\n", p.Pid())
		p.Wait()
		return 0
	case "closed-stdout":
		// Runs a chatty command with migrun's stdout a pipe nobody reads.
		r, w, err := os.Pipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		r.Close()
		if err := unix.Dup3(int(w.Fd()), 1, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		p, err := Start([]string{"/bin/sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done`},
			nil, Options{Stdout: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		res := p.Wait()
		fmt.Fprintf(os.Stderr, "command status=%d output-bytes=%d\n", status(res), len(res.Output))
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// waitTimeout bounds every wait of these tests, so a broken runner fails
// the test instead of hanging it.
const waitTimeout = 20 * time.Second

// status is r in the shell's convention: the exit code, or 128+N after signal N.
func status(r Result) int {
	if r.Signal != 0 {
		return 128 + int(r.Signal)
	}
	return r.ExitCode
}

func waitResult(t *testing.T, p *Process) Result {
	t.Helper()
	got := make(chan Result, 1)
	go func() { got <- p.Wait() }()
	select {
	case r := <-got:
		return r
	case <-time.After(waitTimeout):
		_ = p.Signal(syscall.SIGKILL)
		t.Fatalf("command %d still not done after %v", p.Pid(), waitTimeout)
		return Result{}
	}
}

func startShell(t *testing.T, script string, opts Options, args ...string) *Process {
	t.Helper()
	argv := append([]string{"/bin/sh", "-c", script, "sh"}, args...)
	p, err := Start(argv, nil, opts)
	if err != nil {
		t.Fatalf("Start(%q): %v", script, err)
	}
	t.Cleanup(func() {
		_ = p.Signal(syscall.SIGKILL)
		p.Wait()
	})
	return p
}

func runShell(t *testing.T, script string, opts Options) Result {
	t.Helper()
	return waitResult(t, startShell(t, script, opts))
}

// watchWriter is a live writer the test can wait on for some output.
type watchWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newWatchWriter() *watchWriter {
	return &watchWriter{changed: make(chan struct{}, 1)}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *watchWriter) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for !strings.Contains(w.String(), s) {
		select {
		case <-w.changed:
		case <-deadline:
			t.Fatalf("live output never showed %q; got %q", s, w.String())
		}
	}
}

// gate is a fifo a command blocks on with `read x < "$1"` until the test
// opens it: the test keeps it open for reading and writing, so the command's
// open never blocks and its read returns one line per release.
type gate struct {
	path string
	f    *os.File
}

func newGate(t *testing.T) *gate {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gate")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &gate{path: path, f: f}
}

func (g *gate) release(t *testing.T) {
	t.Helper()
	if _, err := g.f.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		script     string
		wantCode   int
		wantSignal syscall.Signal
		wantStatus int
	}{
		{script: "exit 0", wantCode: 0, wantStatus: 0},
		{script: "exit 1", wantCode: 1, wantStatus: 1},
		{script: "exit 3", wantCode: 3, wantStatus: 3},
		{script: "kill -TERM $$", wantCode: -1, wantSignal: syscall.SIGTERM, wantStatus: 143},
		{script: "kill -KILL $$", wantCode: -1, wantSignal: syscall.SIGKILL, wantStatus: 137},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			r := runShell(t, tt.script, Options{})
			if r.ExitCode != tt.wantCode || r.Signal != tt.wantSignal || status(r) != tt.wantStatus {
				t.Errorf("got exit %d signal %v status %d; want exit %d signal %v status %d",
					r.ExitCode, r.Signal, status(r), tt.wantCode, tt.wantSignal, tt.wantStatus)
			}
			if r.Duration <= 0 || r.MaxRSS <= 0 {
				t.Errorf("Duration %v, MaxRSS %d; want both positive", r.Duration, r.MaxRSS)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	noExecBit := writeFile("no-exec-bit", "#!/bin/sh\nexit 0\n", 0o644)
	garbage := writeFile("garbage", "\x00\x01\x02 not a program\n", 0o755)

	tests := []struct {
		name    string
		argv    []string
		env     []string
		wantErr error // nil: any error but the two sentinels
	}{
		{name: "empty command line", argv: nil},
		{name: "not in PATH", argv: []string{"migrun-no-such-command"}, wantErr: ErrNotFound},
		{name: "no such path", argv: []string{"/nonexistent/migrun/cmd"}, wantErr: ErrNotFound},
		{name: "PATH from env", argv: []string{"sh", "-c", "exit 0"}, env: []string{"PATH=/nonexistent"}, wantErr: ErrNotFound},
		{name: "no execute bit", argv: []string{noExecBit}, wantErr: ErrNotExecutable},
		{name: "no execute bit via PATH", argv: []string{"no-exec-bit"}, env: []string{"PATH=" + dir}, wantErr: ErrNotExecutable},
		{name: "a directory", argv: []string{dir}, wantErr: ErrNotExecutable},
		{name: "not a program", argv: []string{garbage}, wantErr: ErrNotExecutable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(tt.argv, tt.env, Options{})
			if err == nil {
				p.Wait()
				t.Fatalf("Start(%q) succeeded; want an error", tt.argv)
			}
			if tt.wantErr == nil {
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotExecutable) {
					t.Errorf("Start(%q) = %v; want neither ErrNotFound nor ErrNotExecutable", tt.argv, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Start(%q) = %v; want %v", tt.argv, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tt.argv[0])) {
				t.Errorf("error %q does not name the command %q", err, tt.argv[0])
			}
		})
	}
}

func TestStartEnvironment(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"var=$MIGRUN_TEST_VAR\"\necho \"stdin=$(readlink /proc/self/fd/0)\"\n"
	if err := os.WriteFile(filepath.Join(dir, "migrun-test-script"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MIGRUN_TEST_VAR", "inherited")

	tests := []struct {
		name string
		argv []string
		env  []string
		want string
	}{
		{
			name: "env given, command found in its PATH",
			argv: []string{"migrun-test-script"},
			env:  []string{"PATH=/nonexistent", "PATH=" + dir + ":/usr/bin:/bin", "MIGRUN_TEST_VAR=given"},
			want: "var=given\nstdin=/dev/null\n",
		},
		{
			name: "nil env inherits migrun's",
			argv: []string{filepath.Join(dir, "migrun-test-script")},
			want: "var=inherited\nstdin=/dev/null\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(tt.argv, tt.env, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r := waitResult(t, p); r.Output != tt.want || status(r) != 0 {
				t.Errorf("got status %d output %q; want 0, %q", status(r), r.Output, tt.want)
			}
		})
	}
}

func TestSignalReachesPipeline(t *testing.T) {
	// The trapping subshell is the shell's child, migrun's grandchild; the
	// shell itself traps too, so it survives to report the pipeline.
	script := `trap 'echo shell-got-usr1' USR1
(trap 'echo subshell-got-usr1 >&2; exit 0' USR1; echo ready >&2; while :; do sleep 0.05; done) | cat`
	live := newWatchWriter()
	p := startShell(t, script, Options{Stdout: live})
	live.waitFor(t, "ready")
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, p)
	for _, want := range []string{"subshell-got-usr1", "shell-got-usr1"} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("output %q lacks %q", r.Output, want)
		}
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		grace      time.Duration
		wantStatus int
		wantOutput string
	}{
		{
			name:       "stops on SIGTERM",
			script:     `trap 'echo stopping; exit 0' TERM; echo ready; while :; do sleep 0.05; done`,
			grace:      waitTimeout,
			wantStatus: 0,
			wantOutput: "stopping\n",
		},
		{
			name:       "killed when it ignores SIGTERM",
			script:     `trap '' TERM; echo ready; while :; do sleep 0.05; done`,
			grace:      100 * time.Millisecond,
			wantStatus: 128 + int(syscall.SIGKILL),
			wantOutput: "ready\n",
		},
	}
	// wantOutput must be in the output; the shell may add job messages.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := newWatchWriter()
			p := startShell(t, tt.script, Options{Stdout: live})
			live.waitFor(t, "ready")
			p.Stop(tt.grace)
			r := waitResult(t, p)
			if status(r) != tt.wantStatus || !strings.Contains(r.Output, tt.wantOutput) {
				t.Errorf("got status %d output %q; want %d and %q in it", status(r), r.Output, tt.wantStatus, tt.wantOutput)
			}
		})
	}
}

// TestLogsThroughOptionsLogger: the runner's own lines go to the logger it
// is given (so they are JSON when asked, filtered by level and scrubbed of
// secrets by migrun's handler), never to slog's global default.
func TestLogsThroughOptionsLogger(t *testing.T) {
	var global, given syncBuffer
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&global, nil)))
	live := newWatchWriter()
	p := startShell(t, `trap '' TERM; echo ready; while :; do sleep 0.05; done`, Options{
		Stdout: live,
		Logger: slog.New(slog.NewJSONHandler(&given, nil)),
	})
	live.waitFor(t, "ready")
	p.Stop(50 * time.Millisecond)
	waitResult(t, p)
	if !strings.Contains(given.String(), `"msg":"the command did not stop in time; killing it"`) {
		t.Errorf("the given logger lacks the stop line:\n%s", given.String())
	}
	if global.String() != "" {
		t.Errorf("the runner logged through slog's default:\n%s", global.String())
	}
}

func TestSignalAfterExit(t *testing.T) {
	p := startShell(t, "exit 0", Options{})
	first := waitResult(t, p)
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v; want os.ErrProcessDone", err)
	}
	p.Stop(time.Hour) // must return at once: nothing left to stop
	if again := waitResult(t, p); again != first {
		t.Errorf("second Wait = %+v; want %+v", again, first)
	}
}

func TestLiveOutput(t *testing.T) {
	g := newGate(t)
	live := newWatchWriter()
	p := startShell(t, `echo first; read x < "$1"; echo second`, Options{Stdout: live}, g.path)
	live.waitFor(t, "first\n")
	// The command is blocked on the gate, so the line came while it ran.
	if err := p.Signal(0); err != nil {
		t.Fatalf("command gone before release: %v", err)
	}
	g.release(t)
	r := waitResult(t, p)
	if want := "first\nsecond\n"; r.Output != want || live.String() != want {
		t.Errorf("output %q, live %q; want %q", r.Output, live.String(), want)
	}
}

func TestInterleavedOutput(t *testing.T) {
	g := newGate(t)
	live := newWatchWriter() // both streams: writes must be serialised
	lines := []string{"out1\n", "err1\n", "out2\n", "err2\n"}
	p := startShell(t, `echo out1; read x < "$1"; echo err1 >&2; read x < "$1"
echo out2; read x < "$1"; echo err2 >&2`, Options{Stdout: live, Stderr: live}, g.path)
	for i, line := range lines {
		live.waitFor(t, line)
		if i < len(lines)-1 {
			g.release(t)
		}
	}
	r := waitResult(t, p)
	if want := strings.Join(lines, ""); r.Output != want {
		t.Errorf("output %q; want %q", r.Output, want)
	}
}

func TestLargeOutput(t *testing.T) {
	var seqBytes int64
	for i := 1; i <= 1_000_000; i++ {
		seqBytes += int64(len(strconv.Itoa(i)) + 1)
	}
	const zeros = 256 << 20
	tests := []struct {
		name       string
		script     string
		total      int64
		wantPrefix string
		wantSuffix string
	}{
		{
			name:       "256 MiB without a newline",
			script:     fmt.Sprintf("printf HEAD; head -c %d /dev/zero; printf TAIL", zeros),
			total:      4 + zeros + 4,
			wantPrefix: "HEAD\x00\x00",
			wantSuffix: "\x00\x00TAIL",
		},
		{
			name:       "a million lines",
			script:     "seq 1 1000000",
			total:      seqBytes,
			wantPrefix: "1\n2\n3\n",
			wantSuffix: "\n999999\n1000000\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runShell(t, tt.script, Options{})
			if status(r) != 0 {
				t.Fatalf("status %d", status(r))
			}
			wantOmitted := tt.total - 2*defaultCapture
			if r.Omitted != wantOmitted {
				t.Errorf("Omitted = %d; want %d", r.Omitted, wantOmitted)
			}
			if want := 2*defaultCapture + len(omittedMarker(wantOmitted)); len(r.Output) != want {
				t.Errorf("len(Output) = %d; want %d", len(r.Output), want)
			}
			if !strings.HasPrefix(r.Output, tt.wantPrefix) || !strings.HasSuffix(r.Output, tt.wantSuffix) {
				t.Errorf("Output = %q...%q; want %q...%q", r.Output[:10], r.Output[len(r.Output)-10:], tt.wantPrefix, tt.wantSuffix)
			}
			if !strings.Contains(r.Output, omittedMarker(wantOmitted)) {
				t.Errorf("Output lacks the marker %q", omittedMarker(wantOmitted))
			}
		})
	}
}

type failingWriter struct{ calls atomic.Int32 }

func (w *failingWriter) Write([]byte) (int, error) {
	w.calls.Add(1)
	return 0, syscall.EPIPE
}

func TestBrokenLiveWriter(t *testing.T) {
	var stdout, stderr failingWriter
	// 1 MiB is far more than a pipe buffer: the command would block if
	// its output were no longer read.
	r := runShell(t, `head -c 1048576 /dev/zero; echo; echo out-done; echo err-done >&2`,
		Options{Stdout: &stdout, Stderr: &stderr, SeparateStderr: true, CaptureHead: 16, CaptureTail: 32})
	if status(r) != 0 {
		t.Errorf("status %d; want 0", status(r))
	}
	// The streams race each other, so only the totals and stdout's own
	// order are certain: its last line is in the tail.
	if want := int64(1048576+len("\nout-done\nerr-done\n")) - 16 - 32; r.Omitted != want {
		t.Errorf("Omitted = %d; want %d", r.Omitted, want)
	}
	if !strings.Contains(r.Output, "\nout-done\n") {
		t.Errorf("Output %q lacks the last line", r.Output)
	}
	if stdout.calls.Load() != 1 || stderr.calls.Load() != 1 {
		t.Errorf("failing writers called %d and %d times; want once each, then dropped", stdout.calls.Load(), stderr.calls.Load())
	}
}

// TestCaptureKeepsWriteOrder: by default stdout and stderr share one pipe,
// so the capture (and the live copy) is in the order the command wrote,
// every time: two stdout lines and then a stderr line, as a migration's
// lines and Rails' error. With SeparateStderr the live copies are kept
// apart.
func TestCaptureKeepsWriteOrder(t *testing.T) {
	const script = `for i in 1 2 3 4 5 6 7 8 9 10; do echo "out $i a"; echo "out $i b"; echo "err $i" >&2; done`
	var want strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&want, "out %d a\nout %d b\nerr %d\n", i, i, i)
	}
	for run := 0; run < 20; run++ {
		var live syncBuffer
		r := runShell(t, script, Options{Stdout: &live})
		if r.Output != want.String() || live.String() != want.String() {
			t.Fatalf("run %d: captured %q, live %q; want %q", run, r.Output, live.String(), want.String())
		}
	}
	var stdout, stderr syncBuffer
	r := runShell(t, script, Options{Stdout: &stdout, Stderr: &stderr, SeparateStderr: true})
	if strings.Contains(stdout.String(), "err") || strings.Count(stderr.String(), "err") != 10 || len(r.Output) != want.Len() {
		t.Errorf("separate streams: stdout %q, stderr %q, captured %q", stdout.String(), stderr.String(), r.Output)
	}
}

// TestOutputWhileRunning: what the command printed so far can be read
// while it runs (for progress lines).
func TestOutputWhileRunning(t *testing.T) {
	live := newWatchWriter()
	p := startShell(t, `echo first; echo ready; sleep 30`, Options{Stdout: live})
	live.waitFor(t, "ready")
	if got := p.Output(); got != "first\nready\n" {
		t.Errorf("Output() = %q", got)
	}
	_ = p.Signal(syscall.SIGKILL)
	waitResult(t, p)
}

func TestDrainTimeout(t *testing.T) {
	// The background sleep keeps the output pipes open after the shell exits.
	r := runShell(t, `sleep 30 & echo "$!"; echo hi`, Options{DrainTimeout: 300 * time.Millisecond})
	first, rest, _ := strings.Cut(r.Output, "\n")
	sleepPid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("output %q does not start with the sleep's pid", r.Output)
	}
	defer syscall.Kill(sleepPid, syscall.SIGKILL)
	if rest != "hi\n" || status(r) != 0 {
		t.Errorf("status %d, output after the pid %q; want 0, %q", status(r), rest, "hi\n")
	}
	if err := syscall.Kill(sleepPid, 0); err != nil {
		t.Errorf("the sleep holding the output is gone (%v): Wait waited for it instead of the drain timeout", err)
	}
}

// procStat returns the state and parent pid of pid from /proc.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 2 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat: %q", pid, b)
	}
	ppid, err = strconv.Atoi(fields[1])
	return fields[0][0], ppid, err
}

func zombieChildren(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var zombies []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, err := procStat(pid)
		if err == nil && ppid == os.Getpid() && state == 'Z' {
			zombies = append(zombies, pid)
		}
	}
	return zombies
}

func isChildSubreaper(t *testing.T) bool {
	t.Helper()
	var v int32
	_, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	return v != 0
}

func TestReapOrphans(t *testing.T) {
	tests := []struct {
		name   string
		script string
	}{
		{name: "orphan holds the output", script: `(sleep 0.2; exit 0) & exit 7`},
		{name: "orphan outlives the output", script: `(sleep 0.2; exit 0) >/dev/null 2>&1 & exit 7`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runShell(t, tt.script, Options{ReapOrphans: true})
			if status(r) != 7 {
				t.Errorf("status %d; want 7", status(r))
			}
			// Without the subreaper the orphan would go to init and the
			// zombie check below would prove nothing.
			if !isChildSubreaper(t) {
				t.Fatal("ReapOrphans did not make the process a child subreaper")
			}
			// The orphan exits after the command: poll until it has been
			// reaped.
			deadline := time.Now().Add(10 * time.Second)
			for zombies := zombieChildren(t); len(zombies) > 0; zombies = zombieChildren(t) {
				if time.Now().After(deadline) {
					t.Fatalf("zombie children left: %v", zombies)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// startHelper runs this test binary as a helper process, through the runner
// itself: once the orphan reaper runs in this process, any child started
// otherwise could have its exit status reaped from under os/exec.
func startHelper(t *testing.T, mode string, opts Options) *Process {
	t.Helper()
	p, err := Start([]string{os.Args[0], "-test.run=^$"}, append(os.Environ(), helperEnv+"="+mode), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Signal(syscall.SIGKILL)
		p.Wait()
	})
	return p
}

func TestCommandDiesWithMigrun(t *testing.T) {
	live := newWatchWriter()
	helper := startHelper(t, "pdeathsig", Options{Stdout: live})
	live.waitFor(t, "\n")
	sleepPid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(live.String(), "pid=")))
	if err != nil {
		t.Fatalf("helper said %q", live.String())
	}
	t.Cleanup(func() { syscall.Kill(sleepPid, syscall.SIGKILL) })
	if err := syscall.Kill(sleepPid, 0); err != nil {
		t.Fatalf("the helper's command is not running: %v", err)
	}

	if err := helper.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, helper); r.Signal != syscall.SIGKILL {
		t.Fatalf("helper ended with %+v; want killed", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		state, _, err := procStat(sleepPid)
		if err != nil || state == 'Z' || state == 'X' {
			return // gone, or dead and waiting to be reaped by its new parent
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %d still running (state %c) after migrun was killed", sleepPid, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClosedStdoutDoesNotKillMigrun(t *testing.T) {
	r := waitResult(t, startHelper(t, "closed-stdout", Options{}))
	if status(r) != 0 || !strings.Contains(r.Output, "command status=0 ") {
		t.Errorf("helper ended with status %d, output %q; want 0 and the command's status 0", status(r), r.Output)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
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

// TestStandardStream: only a file on a descriptor other than 1 and 2 is
// sure not to write to them; only those need no SIGPIPE handler.
func TestStandardStream(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	tests := []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"stdout", os.Stdout, true},
		{"stderr", os.Stderr, true},
		{"a pipe of its own", w, false},
		{"a closed file", closedFile(t), true},
		{"a buffer, which may be copied anywhere", &bytes.Buffer{}, true},
	}
	for _, tt := range tests {
		if got := standardStream(tt.w); got != tt.want {
			t.Errorf("%s: standardStream = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func closedFile(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "closed")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f
}
