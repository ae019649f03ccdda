package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// Defaults of the frozen holder test; the environment may change them.
const (
	// MIGRUN_TEST_FREEZE: how long the holder stays stopped; longer than D.
	defaultFreeze = 60 * time.Second
	// MIGRUN_TEST_THAW_GAP: between continuing migrun and continuing its
	// command. Thawed at the same instant, the command can run for the
	// millisecond or so migrun takes to wake up and kill it: this test
	// asserts that migrun, woken first, kills its command before the
	// command runs again. 0 thaws both at (almost) once.
	defaultThawGap = 500 * time.Millisecond
)

// TestFaultFrozenHolder: the holder (migrun and its command's process
// group) is stopped with SIGSTOP for longer than D, as a frozen VM or
// cgroup would be, then continued, migrun first.
//
// PostgreSQL: the kernel answers the server's keepalives for a stopped
// process, so the server keeps the session and its lock; the waiter waits,
// the holder finds its lock still held, finishes, and every run exits 0
// without overlap.
//
// MariaDB: the holder's session wait_timeout (about D) ends its session
// during the freeze, freeing the lock, and the waiter runs its command
// then. On thaw the holder must find its lock gone and kill its command
// before it writes again: the holder exits 75 and its command leaves no
// mark after the thaw.
func TestFaultFrozenHolder(t *testing.T) {
	t.Parallel()
	freeze := durationFromEnv(t, "MIGRUN_TEST_FREEZE", defaultFreeze)
	gap := durationFromEnv(t, "MIGRUN_TEST_THAW_GAP", defaultThawGap)
	f := faults{keepAlive: time.Second} // D and G: the defaults
	if freeze <= f.deadHolder() {
		t.Fatalf("MIGRUN_TEST_FREEZE=%s must be longer than D=%s", freeze, f.deadHolder())
	}

	concurrently(t, lockCases, func(t *testing.T, c lockCase) {
		srv := sharedServer(t, c.kind)
		_, url := srv.CreateDatabase(t)
		env := merge(c.env(), f.env(), map[string]string{"DATABASE_URL": url})

		holder := newMarked(t, "holder")
		h := invocation{env: env, args: holder.holderArgs()}.startFault(t, nil)
		holder.waitStarted(t)
		waiter := newMarked(t, "waiter")
		w := invocation{env: env, args: waiter.waiterArgs("0.2")}.startFault(t, nil)
		waitForWaiting(t, "waiter", w)

		migrun, group := h.cmd.Process.Pid, holder.pgid(t)
		t.Cleanup(func() { _ = syscall.Kill(-group, syscall.SIGCONT) })
		signal(t, migrun, syscall.SIGSTOP)
		signal(t, -group, syscall.SIGSTOP)
		frozenAt := time.Now()
		time.Sleep(freeze) // the fault's duration
		thawedAt := time.Now()
		signal(t, migrun, syscall.SIGCONT)
		time.Sleep(gap)
		signal(t, -group, syscall.SIGCONT)

		if c.kind == testdb.KindPostgreSQL {
			// A few checks after the thaw, then the holder finishes.
			time.Sleep(3 * time.Second)
			holder.finish(t)
			deadline := time.Now().Add(timeoutLong)
			assertClean(t, "holder", h.waitBounded(t, "holder", deadline))
			assertClean(t, "waiter", w.waitBounded(t, "waiter", deadline))
			spans := []span{holder.span(t), waiter.span(t)}
			if !spans[0].ended || !spans[1].ended {
				t.Errorf("a command did not run to its end: %s", describeSpans(spans))
			}
			assertSequential(t, spans...)
			return
		}

		hres := h.waitBounded(t, "holder", thawedAt.Add(f.stopTimeout()+timeoutLong))
		wres := w.waitBounded(t, "waiter", time.Now().Add(timeoutLong))
		hs, ws := holder.span(t), waiter.span(t)
		t.Logf("froze at 0s; waiter's command at %s; thawed at %s; holder's last mark at %s, exit %d",
			since(frozenAt, ws.first), since(frozenAt, thawedAt), since(frozenAt, hs.last), hres.status)
		assertFenced(t, "holder", hres)
		if hs.last.After(thawedAt) {
			t.Errorf("the holder's command wrote %s after the thaw", since(thawedAt, hs.last))
		}
		if wres.status != 0 || !ws.ran() || !ws.first.Before(thawedAt) {
			t.Errorf("waiter exited %d, its command ran %s after the freeze (thaw at %s); want 0, and run during the freeze:\n%s",
				wres.status, since(frozenAt, ws.first), since(frozenAt, thawedAt), wres.stderr)
		}
		assertSequential(t, hs, ws)
	})
}

func signal(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill(%d, %v): %v", pid, sig, err)
	}
}
