package runner

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// exit is how a reaped child ended.
type exit struct {
	status unix.WaitStatus
	rusage unix.Rusage
	at     time.Time
	err    error // the status was lost (another wait4(-1) in migrun took it)
}

// child is a command started by this package, waiting to be reaped.
type child struct {
	pid    int
	reaped bool          // guarded by children.mu; never signal the pid after
	exit   exit          // valid once done is closed
	done   chan struct{} // closed when reaped
}

// children is every command this package started and has not reaped yet.
// Its mutex is held across fork (so a pid is registered before anyone can
// reap it), across every reaping wait4 (so a status always reaches its
// child), and across signalling (so a reaped, possibly reused, pid is never
// signalled).
var children = struct {
	sync.Mutex
	byPid map[int]*child
}{byPid: map[int]*child{}}

// markReapedLocked records how c ended, once reaped; children.mu must be held.
func (c *child) markReapedLocked(e exit) {
	c.reaped = true
	c.exit = e
	delete(children.byPid, c.pid)
	close(c.done)
}

// wait blocks until c has been reaped, by this call or by the orphan reaper,
// and returns how it ended. It waits with WNOWAIT first so that the pid is
// only freed while children.mu is held.
func (c *child) wait(log *slog.Logger) exit {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, unix.ECHILD) {
			log.Warn("waiting for the command failed", "pid", c.pid, "err", err)
		}
		break
	}
	children.Lock()
	if !c.reaped {
		c.reapNowLocked()
	}
	children.Unlock()
	<-c.done
	return c.exit
}

// reapNowLocked reaps c, which waitid reported waitable (or gone);
// children.mu must be held.
func (c *child) reapNowLocked() {
	for {
		var e exit
		pid, err := unix.Wait4(c.pid, &e.status, unix.WNOHANG, &e.rusage)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		e.at = time.Now()
		switch {
		case err != nil:
			// Only a wait4(-1) outside this package can have taken it.
			e.err = fmt.Errorf("reap pid %d: %w", c.pid, err)
		case pid != c.pid:
			e.err = fmt.Errorf("reap pid %d: not exited", c.pid)
		}
		c.markReapedLocked(e)
		return
	}
}

var (
	subreaperOnce sync.Once
	subreaperErr  error
	orphanOnce    sync.Once
	// childStarted wakes the orphan reaper when it found no child to wait
	// for and a new one was started.
	childStarted = make(chan struct{}, 1)
)

// startOrphanReaper makes migrun reap every child that ends up reparented to
// it, for the rest of its life: the kernel reparents orphans to PID 1 or to
// the nearest child subreaper, and as PID 1 in a container nobody else would
// reap them. Outside PID 1 the process makes itself a child subreaper so the
// same code path runs. The reaper logs through the logger of the first
// Start that asked for it.
func startOrphanReaper(log *slog.Logger) error {
	if os.Getpid() != 1 {
		subreaperOnce.Do(func() {
			if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
				subreaperErr = fmt.Errorf("become child subreaper: %w", err)
			}
		})
		if subreaperErr != nil {
			return subreaperErr
		}
	}
	orphanOnce.Do(func() { go reapOrphans(log) })
	return nil
}

// notifyChildStarted wakes the orphan reaper if it is idle.
func notifyChildStarted() {
	select {
	case childStarted <- struct{}{}:
	default:
	}
}

func reapOrphans(log *slog.Logger) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOWAIT, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			// No child at all, so no descendant can be orphaned to us
			// until a new command starts.
			<-childStarted
			continue
		case err != nil:
			log.Error("waiting for orphans failed; orphans are no longer reaped", "err", err)
			return
		}
		reapAllWaitable(log)
	}
}

// reapAllWaitable reaps every exited child, handing the statuses of the
// commands this package started to their waiters.
func reapAllWaitable(log *slog.Logger) {
	children.Lock()
	defer children.Unlock()
	for {
		var e exit
		pid, err := unix.Wait4(-1, &e.status, unix.WNOHANG, &e.rusage)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		e.at = time.Now()
		if c := children.byPid[pid]; c != nil {
			c.markReapedLocked(e)
			continue
		}
		log.Debug("reaped an orphan", "pid", pid, "status", describeStatus(e.status))
	}
}

func describeStatus(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}
