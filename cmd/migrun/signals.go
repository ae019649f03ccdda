package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// forwarded are the signals that stop migrun while it waits and that are
// passed on to the command while it runs, as an orchestrator or a terminal
// sends them.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}

// watchSignals starts delivering the forwarded signals to the returned
// channel; stop ends that. A signal that migrun inherited as ignored (SIGHUP
// under nohup) is left ignored: watching it would un-ignore it for migrun,
// and the command, which inherits the ignored disposition, would then get
// it forwarded.
func watchSignals() (sigs <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 8)
	return ch, watchSignalsOn(ch)
}

// watchSignalsOn is watchSignals onto a channel of the caller's.
func watchSignalsOn(ch chan os.Signal) (stop func()) {
	for _, s := range forwarded {
		if !signal.Ignored(s) {
			signal.Notify(ch, s)
		}
	}
	return func() { signal.Stop(ch) }
}

// stoppedBy is the cause of a context cancelled by a signal.
type stoppedBy struct{ sig syscall.Signal }

func (s stoppedBy) Error() string { return "stopped by " + s.sig.String() }

// cancelOnSignal returns a context that is cancelled when a signal arrives
// on sigs (its cause then a stoppedBy), and a function to release it. The
// signal is carried by the context itself, so reading it needs no
// synchronisation beyond ctx.Done().
func cancelOnSignal(ctx context.Context, sigs <-chan os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(stoppedBy{s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		cancel(context.Canceled)
	}
}

// signalOf is the signal that cancelled ctx, or 0.
func signalOf(ctx context.Context) int {
	if s, ok := context.Cause(ctx).(stoppedBy); ok {
		return int(s.sig)
	}
	return 0
}

// signalWatch is watchSignals done in the background. Each signal.Notify
// and signal.Stop is a round trip to the Go runtime's signal-mask thread
// (about 0.05 ms each, on a busy machine or a small VM 0.3 ms and more):
// set up while the configuration is read and the lock is prepared, and
// taken down while the result is reported.
//
// Its channel exists at once, and the signals arrive on it once watched.
// What must not start unwatched waits for that (wait): the command, and a
// wait for the lock (lock.Options.BeforeWait). Connecting and taking a
// free lock do not. A signal before then ends migrun as it would by
// default: no command has started, and a lock taken meanwhile is freed
// with its connection (or its file).
type signalWatch struct {
	ready   chan struct{} // closed once watching
	sigs    chan os.Signal
	stop    func()
	stopped chan struct{} // closed once stopped
	once    sync.Once
}

// watchSignalsAsync starts watchSignals in the background.
func watchSignalsAsync() *signalWatch {
	w := &signalWatch{ready: make(chan struct{}), sigs: make(chan os.Signal, 8), stopped: make(chan struct{})}
	go func() {
		defer close(w.ready)
		w.stop = watchSignalsOn(w.sigs)
	}()
	return w
}

// channel is where the signals arrive, once they are watched.
func (w *signalWatch) channel() <-chan os.Signal { return w.sigs }

// wait returns once the signals are watched.
func (w *signalWatch) wait() { <-w.ready }

// stopAsync starts to stop watching; idempotent. The signals still
// sent to the channel meanwhile are not read.
func (w *signalWatch) stopAsync() {
	w.once.Do(func() {
		go func() {
			defer close(w.stopped)
			<-w.ready
			w.stop()
		}()
	})
}

// close stops watching (starting that if stopAsync has not) and waits
// until the signals have their former dispositions.
func (w *signalWatch) close() {
	w.stopAsync()
	<-w.stopped
}

// exitsAfterMain is set by main, which exits as soon as Main returns.
var exitsAfterMain bool

// end is close as a run returns, without the wait when the process exits
// next: the dispositions then no longer matter, and restoring them is
// four round trips to the runtime's signal thread (see signalWatch) on
// the way to exit. Tests, which call Main, get them restored.
func (w *signalWatch) end() {
	if exitsAfterMain {
		w.stopAsync()
		return
	}
	w.close()
}
