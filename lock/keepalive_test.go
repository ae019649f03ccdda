package lock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// unitTiming is the keep-alive's timing at a tenth of a second's scale.
var unitTiming = Timing{
	ServerBound:          time.Second,
	Fence:                800 * time.Millisecond,
	StopAfterUnconfirmed: 600 * time.Millisecond,
	ToleratedStall:       500 * time.Millisecond,
	TakeoverGuard:        time.Second,
	WakeGrace:            200 * time.Millisecond,
	KeepAlive:            100 * time.Millisecond,
}

var errFakeGone = errors.New("connection reset by peer")

// fakeSession is a held lock's connection whose answers a test scripts:
// confirm calls check with the number of the check (from 1).
type fakeSession struct {
	check   func(ctx context.Context, n int) (bool, error)
	calls   atomic.Int32
	idleErr chan error // a value ends the current idle wait with it
}

func (f *fakeSession) confirm(ctx context.Context) (bool, error) {
	n := int(f.calls.Add(1))
	if f.check == nil {
		return true, nil
	}
	return f.check(ctx, n)
}

func (f *fakeSession) idle(ctx context.Context, until time.Time, _ bool) error {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case err := <-f.idleErr:
		return err
	}
	return nil
}

func (f *fakeSession) gone(err error) bool { return errors.Is(err, errFakeGone) }

// blockUntilCancelled is a check that is never answered.
func blockUntilCancelled(ctx context.Context) (bool, error) {
	<-ctx.Done()
	return false, errFakeGone
}

// keepAliveCase is one scripted life of a held lock.
type keepAliveCase struct {
	name   string
	timing Timing
	check  func(ctx context.Context, n int) (bool, error)
	// freeze pauses the keep-alive once, at stage, for this long.
	freezeAt string
	freeze   time.Duration
	endIdle  error // ends the first idle wait with this error
	// want: lost, and how.
	lost, definite bool
	// stopByPast: StopBy had passed when the loss was reported (it was
	// found too late: migrun was paused).
	stopByPast bool
	// runFor is how long a lock that is not lost is watched.
	runFor time.Duration
}

func (c keepAliveCase) String() string { return c.name }

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	k := unitTiming.KeepAlive
	tests := []keepAliveCase{
		{name: "answered", runFor: 10 * k},
		{name: "slow check within the tolerated stall", runFor: 10 * k,
			check: func(ctx context.Context, n int) (bool, error) {
				if n == 2 {
					time.Sleep(3 * k)
				}
				return true, nil
			}},
		{name: "unanswered check", lost: true,
			check: func(ctx context.Context, n int) (bool, error) {
				if n >= 2 {
					return blockUntilCancelled(ctx)
				}
				return true, nil
			}},
		{name: "server says not ours", lost: true, definite: true,
			check: func(ctx context.Context, n int) (bool, error) { return n < 3, nil }},
		{name: "connection gone on a check", lost: true, definite: true,
			check: func(ctx context.Context, n int) (bool, error) { return false, errFakeGone }},
		{name: "checks refused on a live connection", lost: true,
			check: func(ctx context.Context, n int) (bool, error) {
				return false, errors.New("canceling statement due to user request")
			}},
		{name: "one check refused", runFor: 10 * k,
			check: func(ctx context.Context, n int) (bool, error) {
				if n == 1 {
					return false, errors.New("canceling statement due to user request")
				}
				return true, nil
			}},
		{name: "connection ends while idle, found at once", lost: true, definite: true,
			timing: withKeepAlive(unitTiming, time.Hour), endIdle: errFakeGone},
		{name: "paused while idle past the fence, then answered", runFor: 10 * k,
			freezeAt: "idle", freeze: 2 * unitTiming.ServerBound},
		{name: "paused while idle past the fence, then unanswered", lost: true, stopByPast: true,
			freezeAt: "idle", freeze: 2 * unitTiming.ServerBound,
			check: func(ctx context.Context, n int) (bool, error) { return blockUntilCancelled(ctx) }},
		{name: "paused with a check in flight, answered meanwhile", runFor: 10 * k,
			freezeAt: "check", freeze: 2 * unitTiming.ServerBound},
	}
	atOnce(t, tests, func(t *testing.T, tt keepAliveCase) {
		timing := tt.timing
		if timing == (Timing{}) {
			timing = unitTiming
		}
		f := &fakeSession{check: tt.check, idleErr: make(chan error, 1)}
		if tt.endIdle != nil {
			f.idleErr <- tt.endIdle
		}
		ka := newKeepAlive(timing, quiet, "test lock")
		var once sync.Once
		var woke atomic.Int64 // when the pause ended, in UnixNano
		if tt.freeze > 0 {
			ka.freeze = func(stage string) {
				if stage == tt.freezeAt {
					once.Do(func() {
						time.Sleep(tt.freeze)
						woke.Store(time.Now().UnixNano())
					})
				}
			}
		}
		started := time.Now()
		ka.start(f, started)
		if !tt.lost {
			select {
			case <-ka.Lost():
				t.Fatalf("lost: %v", ka.Err())
			case <-time.After(tt.freeze + tt.runFor):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if !ka.halt(ctx) {
				t.Error("halt() = false, want the lock confirmed")
			}
			if n := f.calls.Load(); n < 3 {
				t.Errorf("%d checks, want several", n)
			}
			return
		}
		select {
		case <-ka.Lost():
		case <-time.After(30 * time.Second):
			t.Fatal("not reported lost")
		}
		found := time.Now()
		var lostErr *LostError
		if err := ka.Err(); !errors.As(err, &lostErr) || !errors.Is(err, ErrLost) {
			t.Fatalf("Err() = %v, want a *LostError wrapping ErrLost", err)
		}
		if lostErr.Definite != tt.definite {
			t.Errorf("Definite = %v, want %v (%v)", lostErr.Definite, tt.definite, lostErr)
		}
		switch {
		case tt.definite:
			if lostErr.StopBy.After(found) {
				t.Errorf("a definite loss's StopBy %v is after it was found", lostErr.StopBy.Sub(found))
			}
		case tt.stopByPast:
			if !lostErr.StopBy.Before(found) {
				t.Errorf("StopBy is %v after it was found, want past", lostErr.StopBy.Sub(found))
			}
			if w := time.Unix(0, woke.Load()); found.Sub(w) < timing.WakeGrace {
				t.Errorf("reported %v after the pause ended, want at least the wake grace %v", found.Sub(w), timing.WakeGrace)
			}
		default:
			// Reported StopLead before the fence, which is Fence after
			// the send of the last answered check.
			if !lostErr.StopBy.After(found) {
				t.Errorf("StopBy is %v before it was found, want in the future", found.Sub(lostErr.StopBy))
			}
			if gap := lostErr.StopBy.Sub(started); gap < timing.Fence || gap > timing.Fence+timing.KeepAlive+100*time.Millisecond {
				t.Errorf("StopBy is %v after the lock was taken, want the fence (%v) after the last answered check", gap, timing.Fence)
			}
		}
		// Lost is final, and halt is bounded by its context even with a
		// check in flight.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		begin := time.Now()
		if ka.halt(ctx) {
			t.Error("halt() = true after a loss")
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("halt took %v", d)
		}
	})
}

func withKeepAlive(t Timing, k time.Duration) Timing {
	t.KeepAlive = k
	return t
}
