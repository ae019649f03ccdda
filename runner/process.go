package runner

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	defaultCapture      = 64 << 10
	defaultDrainTimeout = 2 * time.Second
	readBufferSize      = 256 << 10
	// pipeSize is the capacity asked for the command's output pipes (64 KiB
	// by default): a command that prints fast is woken, and migrun wakes to
	// read, once per 256 KiB rather than per few KiB.
	pipeSize = 1 << 20
)

// Process is a running command started by Start.
type Process struct {
	log     *slog.Logger
	child   *child
	exited  chan struct{} // closed once the command has been reaped
	done    chan struct{} // closed once result is set
	result  Result
	capture *capture
}

// Start starts argv with env as its environment (nil inherits migrun's) and
// stdin from /dev/null, in a process group of its own so that signals reach
// a whole pipeline. argv[0] is looked up in the PATH of env, or in migrun's
// when env sets none. The errors wrap ErrNotFound or ErrNotExecutable when
// the command cannot be run.
//
// The command (the direct child: Pdeathsig reaches no further) is killed if
// migrun dies. Its output is copied live to opts.Stdout (and, with
// opts.SeparateStderr, its stderr to opts.Stderr) and into the bounded
// Result.Output. When those may be descriptor 1 or 2, Start also installs
// a SIGPIPE handler for the whole process (CatchSIGPIPEFor), so that a
// closed stdout cannot kill migrun.
func Start(argv []string, env []string, opts Options) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("start command: empty command line")
	}
	name := argv[0]
	path, err := lookPath(name, pathFrom(env))
	if err != nil {
		return nil, fmt.Errorf("start %q: %w", name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ReapOrphans {
		if err := startOrphanReaper(log); err != nil {
			return nil, fmt.Errorf("start %q: %w", name, err)
		}
	}
	CatchSIGPIPEFor(opts.Stdout, opts.Stderr)

	// exec is given *os.File ends, so it starts no copying goroutines of its
	// own: the readers below own the output. By default stdout and stderr
	// share one pipe: writes to a pipe keep their order, so the capture is
	// exactly what the command wrote, in the order it wrote it.
	streams, err := openStreams(opts)
	if err != nil {
		return nil, fmt.Errorf("start %q: %w", name, err)
	}
	closeAll := func(ends func(outputStream) *os.File) {
		for _, st := range streams {
			ends(st).Close()
		}
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    env,
		Stdout: streams[0].w,
		Stderr: streams[len(streams)-1].w,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}

	head, tail := opts.CaptureHead, opts.CaptureTail
	if head <= 0 {
		head = defaultCapture
	}
	if tail <= 0 {
		tail = defaultCapture
	}
	drainTimeout := opts.DrainTimeout
	if drainTimeout <= 0 {
		drainTimeout = defaultDrainTimeout
	}
	p := &Process{
		log:     log,
		exited:  make(chan struct{}),
		done:    make(chan struct{}),
		capture: newCapture(head, tail),
	}

	var readers sync.WaitGroup
	drained := make(chan struct{})
	started := make(chan error, 1)
	go p.supervise(cmd, started, drained, drainTimeout, func() {
		// A grandchild still holds the pipes: stop reading, so the readers
		// return and close their ends.
		now := time.Now()
		for _, st := range streams {
			_ = st.r.SetReadDeadline(now)
		}
	})
	err = <-started
	// The child has its own copies; ours must go so the readers see EOF
	// when the command (and whatever inherited them) is gone.
	closeAll(func(st outputStream) *os.File { return st.w })
	if err != nil {
		closeAll(func(st outputStream) *os.File { return st.r })
		return nil, fmt.Errorf("start %q: %w", name, classifyStartError(err))
	}

	// One lock for the live writers: at most one Write at a time, so
	// Stdout and Stderr may be the same writer.
	var liveMu sync.Mutex
	readers.Add(len(streams))
	for _, st := range streams {
		go p.copyOutput(&readers, st.r, &liveWriter{mu: &liveMu, w: st.live})
	}
	go func() {
		readers.Wait()
		close(drained)
	}()
	return p, nil
}

// outputStream is a pipe the command writes to, and where its live copy goes.
type outputStream struct {
	r, w *os.File
	live io.Writer
}

// openStreams makes the command's output pipes: one for stdout and stderr
// together, copied live to opts.Stdout, or with opts.SeparateStderr one each.
func openStreams(opts Options) ([]outputStream, error) {
	lives := []io.Writer{opts.Stdout}
	if opts.SeparateStderr {
		lives = append(lives, opts.Stderr)
	}
	var streams []outputStream
	for _, live := range lives {
		r, w, err := os.Pipe()
		if err != nil {
			for _, st := range streams {
				st.r.Close()
				st.w.Close()
			}
			return nil, fmt.Errorf("output pipe: %w", err)
		}
		streams = append(streams, outputStream{r: r, w: w, live: live})
	}
	// Best effort: above /proc/sys/fs/pipe-max-size (1 MiB by default) an
	// unprivileged process is refused, and the default size still works.
	// The live writers too, when they are pipes (a container's log pipe),
	// so a 256 KiB write is not cut into four waits for the reader;
	// F_SETPIPE_SZ fails harmlessly on anything else.
	for _, st := range streams {
		growPipe(st.w)
		if f, ok := st.live.(*os.File); ok {
			growPipe(f)
		}
	}
	return streams, nil
}

// growPipe asks for a pipeSize buffer when f is a smaller pipe; only pipes
// answer, and a larger one is never shrunk.
func growPipe(f *os.File) {
	sc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = sc.Control(func(fd uintptr) {
		if size, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && size < pipeSize {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
		}
	})
}

// supervise starts cmd and reaps it from one locked OS thread: Pdeathsig
// fires when the thread that forked the command exits, and the Go runtime
// may retire an unlocked thread at any time, which would kill the command.
func (p *Process) supervise(cmd *exec.Cmd, started chan<- error, drained <-chan struct{}, drainTimeout time.Duration, stopReading func()) {
	runtime.LockOSThread()
	startedAt := time.Now()

	children.Lock()
	err := cmd.Start()
	if err == nil {
		p.child = &child{pid: cmd.Process.Pid, done: make(chan struct{})}
		children.byPid[p.child.pid] = p.child
	}
	children.Unlock()
	if err != nil {
		runtime.UnlockOSThread()
		started <- err
		return
	}
	notifyChildStarted()
	started <- nil

	e := p.child.wait(p.log)
	runtime.UnlockOSThread()
	// Reaped already: Release only frees what os.Process holds (a pidfd).
	_ = cmd.Process.Release()
	close(p.exited)

	timer := time.NewTimer(drainTimeout)
	select {
	case <-drained:
	case <-timer.C:
		p.log.Debug("command exited but its output is still open; not waiting for it",
			"pid", p.child.pid, "drain_timeout", drainTimeout)
		// Not waiting for the readers: one may be stuck in a live writer
		// that stopped reading, and the capture is complete enough.
		stopReading()
	}
	timer.Stop()

	r := Result{
		Duration: e.at.Sub(startedAt),
		MaxRSS:   e.rusage.Maxrss * 1024, // KiB on Linux
	}
	switch {
	case e.err != nil:
		p.log.Error("the command's exit status was lost", "pid", p.child.pid, "err", e.err)
		r.ExitCode = -1
		r.Err = e.err
	case e.status.Signaled():
		r.ExitCode = -1
		r.Signal = e.status.Signal()
	default:
		r.ExitCode = e.status.ExitStatus()
	}
	r.Output, r.Omitted = p.capture.result()
	p.result = r
	close(p.done)
}

// copyOutput reads one of the command's streams until EOF (or until the
// drain deadline), into the shared capture and on to the live writer.
func (p *Process) copyOutput(wg *sync.WaitGroup, r *os.File, live *liveWriter) {
	defer wg.Done()
	defer r.Close()
	buf := make([]byte, readBufferSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = p.capture.Write(buf[:n])
			live.write(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				p.log.Warn("reading the command's output failed", "err", err)
			}
			return
		}
	}
}

// liveWriter forwards output to a caller's writer until the first error:
// a closed stdout must not stop the copy into the capture, nor block the
// command on a full pipe.
type liveWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *liveWriter) write(p []byte) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(p); err != nil {
		l.w = nil
	}
}

var prepareOnce sync.Once

// Prepare does, in the background, the one-time work of the first Start
// that does not depend on the command, so that it is not on the path to
// the command's start: os/exec checks, on its first start of a process,
// that the kernel's pidfd calls work (it opens a pidfd of migrun, waits on
// it, signals it, and clones a child that exits at once), and os.FindProcess
// makes the same check. Calling it is optional; it is idempotent.
func Prepare() {
	prepareOnce.Do(func() {
		go func() {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Release()
			}
		}()
	})
}

var sigpipeOnce sync.Once

// CatchSIGPIPE keeps a write to a closed stdout or stderr from killing
// migrun (and, through Pdeathsig, the migration): without a handler the Go
// runtime dies of SIGPIPE on such a write to fd 1 or 2. A handler, unlike
// ignoring the signal, is reset by exec, so the command still gets the
// default behaviour. It is idempotent; it costs a round trip to the
// runtime's signal thread the first time.
func CatchSIGPIPE() {
	sigpipeOnce.Do(func() {
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	})
}

// CatchSIGPIPEFor calls CatchSIGPIPE unless no write to ws can end the
// program with SIGPIPE. The Go runtime raises it only for a write to a
// closed pipe on descriptor 1 or 2; on any other descriptor the write
// fails with EPIPE. Nil writers and files on other descriptors (a
// duplicate of stdout) need no handler; any other writer may write to 1
// or 2. Start calls it for the command's live output; call it earlier to
// cover the program's own writes.
func CatchSIGPIPEFor(ws ...io.Writer) {
	for _, w := range ws {
		if w == nil || !standardStream(w) {
			continue
		}
		CatchSIGPIPE()
		return
	}
}

// standardStream reports whether w may write to descriptor 1 or 2:
// anything but a file on another descriptor.
func standardStream(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return true
	}
	sc, err := f.SyscallConn() // not Fd, which would make the file blocking
	if err != nil {
		return true
	}
	std := true
	if cerr := sc.Control(func(fd uintptr) { std = fd == 1 || fd == 2 }); cerr != nil {
		return true
	}
	return std
}

// Output is the output captured so far, bounded as Result.Output is: for
// progress reports while the command runs.
func (p *Process) Output() string {
	out, _ := p.capture.result()
	return out
}

// Pid is the command's process id, which is also its process group id.
func (p *Process) Pid() int { return p.child.pid }

// Signal sends sig to the command's process group, so that every process of
// a pipeline gets it. Once the command has been reaped it returns
// os.ErrProcessDone and signals nothing: its pid may belong to someone else.
func (p *Process) Signal(sig syscall.Signal) error {
	children.Lock()
	defer children.Unlock()
	if p.child.reaped {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-p.child.pid, sig); err != nil {
		return fmt.Errorf("send %v to process group %d: %w", sig, p.child.pid, err)
	}
	return nil
}

// Stop asks the command to stop with SIGTERM and, if it is still running
// after grace, kills its process group with SIGKILL. It returns when the
// command has exited or SIGKILL was sent; Wait collects the result.
func (p *Process) Stop(grace time.Duration) {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		if !errors.Is(err, os.ErrProcessDone) {
			p.log.Warn("stopping the command", "err", err)
		}
		return
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
		return
	case <-timer.C:
	}
	p.log.Warn("the command did not stop in time; killing it", "pid", p.child.pid, "grace", grace)
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.log.Warn("killing the command", "err", err)
	}
}

// Wait blocks until the command has exited and its output has been read
// (for at most Options.DrainTimeout after the exit, in case a grandchild
// keeps the output open), and returns how it ended. It may be called any
// number of times, from any goroutine.
func (p *Process) Wait() Result {
	<-p.done
	return p.result
}
