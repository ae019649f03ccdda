package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// heldSession is the held lock's connection, as the keep-alive uses it.
// The keep-alive is its only user until halt returns.
type heldSession interface {
	// confirm asks the server whether this connection still holds the
	// lock. It has no deadline: on the lock's connection a deadline closes
	// the connection, which frees the lock. ctx is cancelled only to give
	// up on it, and then the connection is closed.
	confirm(ctx context.Context) (ours bool, err error)
	// idle waits until until, returning early when ctx ends or the
	// connection shows signs of ending (then with an error when it is
	// known to be gone, or nil to have it checked at once). watch false:
	// just wait.
	idle(ctx context.Context, until time.Time, watch bool) error
	// gone reports whether err, from confirm or idle, means the
	// connection is gone (closed, reset, ended by the server), as opposed
	// to a statement the server refused on a connection that is fine.
	gone(err error) bool
}

// lockState is what the keep-alive knows of the lock.
type lockState int

const (
	held    lockState = iota // the last check found the lock ours
	unknown                  // a check is in flight, failed, or was given up
	lost                     // reported through Lost
)

// keepAlive confirms a held lock every KeepAlive and reports it Lost,
// for good, when the server says it is gone, the connection ends, or it
// has gone unconfirmed so long that the server could soon free it.
//
// The times: t_ok is when the last check the server answered "ours" was
// sent. The server cannot free the lock of a silent holder before
// t_ok + ServerBound, so the command must stop by t_ok + Fence; an
// unanswered check is reported at t_ok + StopAfterUnconfirmed, StopLead
// before that.
type keepAlive struct {
	timing Timing
	log    *slog.Logger
	what   string
	// freeze, for tests, is called before each idle wait (stage "idle")
	// and before waiting for a check's answer ("check"): blocking in it
	// is migrun being paused (SIGSTOP) there.
	freeze func(stage string)

	lostCh chan struct{}

	// Set by start.
	stopOnce sync.Once
	stop     chan struct{}      // closed by halt
	stopIdle context.CancelFunc // ends an idle wait at once
	abort    context.CancelFunc // gives up a check in flight (closing the connection)
	done     chan struct{}      // closed when the loop has returned

	mu    sync.Mutex // guards the fields below
	state lockState
	err   *LostError
}

func newKeepAlive(t Timing, log *slog.Logger, what string) *keepAlive {
	return &keepAlive{timing: t, log: log, what: what, lostCh: make(chan struct{})}
}

func (k *keepAlive) Lost() <-chan struct{} { return k.lostCh }

func (k *keepAlive) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		return nil
	}
	return k.err
}

// start begins confirming the lock taken by a statement sent at confirmed.
func (k *keepAlive) start(s heldSession, confirmed time.Time) {
	k.stop, k.done = make(chan struct{}), make(chan struct{})
	idleCtx, stopIdle := context.WithCancel(context.Background())
	life, abort := context.WithCancel(context.Background())
	k.stopIdle, k.abort = stopIdle, abort
	k.state = held
	go k.run(s, confirmed, idleCtx, life)
}

// halt stops the keep-alive and waits for it, so that nothing else uses
// the connection. A check in flight may finish until ctx ends; then it is
// given up, which closes the connection. It reports whether the lock was
// confirmed by the last check and the connection is free for a release.
func (k *keepAlive) halt(ctx context.Context) bool {
	if k.done == nil {
		return true // never started
	}
	k.stopOnce.Do(func() {
		close(k.stop)
		k.stopIdle()
	})
	select {
	case <-k.done:
	case <-ctx.Done():
		k.abort()
		<-k.done
	}
	k.abort()
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state == held
}

func (k *keepAlive) stopping() bool {
	select {
	case <-k.stop:
		return true
	default:
		return false
	}
}

func (k *keepAlive) setState(s lockState) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state != lost {
		k.state = s
	}
}

// lose reports the lock Lost, once.
func (k *keepAlive) lose(e *LostError) {
	k.mu.Lock()
	if k.state == lost {
		k.mu.Unlock()
		return
	}
	e.Lock = k.what
	k.state, k.err = lost, e
	k.mu.Unlock()
	if e.Definite {
		k.log.Error("lock lost", "lock", k.what, "err", e.Cause)
	} else {
		k.log.Error("lock not confirmed in time; the command must stop", "lock", k.what,
			"unconfirmed", e.Unconfirmed.Round(100*time.Millisecond), "stop_by", e.StopBy.Format(time.RFC3339Nano), "err", e.Cause)
	}
	close(k.lostCh)
}

func (k *keepAlive) loseDefinitely(cause error) {
	k.lose(&LostError{Cause: cause, Definite: true, StopBy: time.Now()})
}

// errUnconfirmed is the cause of a loss reported for want of an answer.
var errUnconfirmed = errors.New("the database has not answered the lock's check")

// errNotOurs: the server answered that the lock is no longer this session's.
var errNotOurs = errors.New("the database says the lock is no longer held by migrun's session")

type checkResult struct {
	ours bool
	err  error
}

func (k *keepAlive) run(s heldSession, confirmed time.Time, idleCtx, life context.Context) {
	defer close(k.done)
	t := k.timing
	next := confirmed.Add(t.KeepAlive)
	watch := true   // idle watches the connection for its end
	failed := false // the last check failed on a live connection
	for {
		if k.freeze != nil {
			k.freeze("idle")
		}
		until := next
		reportAt := confirmed.Add(t.StopAfterUnconfirmed)
		if failed && reportAt.Before(until) {
			until = reportAt
		}
		err := s.idle(idleCtx, until, watch)
		if k.stopping() {
			return
		}
		if err != nil {
			k.loseDefinitely(err)
			return
		}
		now := time.Now()
		if failed && !now.Before(reportAt) && now.Sub(until) < t.WakeGrace/2 {
			// Checks kept failing until the report time. (Waking late
			// instead, migrun having been paused, earns a fresh check.)
			k.loseUnconfirmed(confirmed, now)
			return
		}
		early := now.Before(until) // the connection looked like ending

		sent := time.Now()
		res := make(chan checkResult, 1)
		go func() {
			ours, err := s.confirm(life)
			res <- checkResult{ours, err}
		}()
		k.setState(unknown)
		r, ok := k.await(res, confirmed, sent)
		if !ok {
			return
		}
		switch {
		case r.err != nil && s.gone(r.err):
			k.loseDefinitely(r.err)
			return
		case r.err != nil:
			if !failed {
				k.log.Warn("lock check failed; the lock is not confirmed", "lock", k.what, "err", r.err)
			}
			failed = true
		case !r.ours:
			k.loseDefinitely(errNotOurs)
			return
		default:
			failed = false
			confirmed = sent
			k.setState(held)
		}
		next = sent.Add(t.KeepAlive)
		// A check that the connection's activity brought forward and that
		// came back fine: do not let that activity bring the next one
		// forward too (no busy loop on a chatty connection).
		watch = !(early && r.err == nil)
		if !time.Now().Before(confirmed.Add(t.StopAfterUnconfirmed)) {
			next = time.Now() // an old confirmation (migrun was paused): confirm afresh at once
		}
	}
}

// await waits for the answer to the check sent at sent. It reports the
// lock Lost if the answer has not come by the report time (the last
// confirmation's StopAfterUnconfirmed), though never before the check
// had WakeGrace: after migrun was paused the report time is past. It
// returns false when the keep-alive is to end: halted, or reported.
func (k *keepAlive) await(res <-chan checkResult, confirmed, sent time.Time) (checkResult, bool) {
	t := k.timing
	deadline := later(confirmed.Add(t.StopAfterUnconfirmed), sent.Add(t.WakeGrace))
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	if k.freeze != nil {
		k.freeze("check")
	}
	for {
		select {
		case r := <-res:
			return r, true
		case <-k.stop:
			r := <-res // halt bounds this, giving the check up when out of time
			if r.err == nil && r.ours {
				k.setState(held)
			}
			return r, false
		case <-timer.C:
			// (Not the channel's value: that is when the timer was due.)
			now := time.Now()
			if now.Sub(deadline) > t.WakeGrace/2 {
				// The timer fired late: migrun itself was paused, and the
				// answer may be waiting to be read. Give it time.
				deadline = now.Add(t.WakeGrace)
				timer.Reset(t.WakeGrace)
				continue
			}
			k.loseUnconfirmed(confirmed, now)
			// Lost is final; wait for the check so that halt finds the
			// connection idle (or gives the check up).
			select {
			case <-res:
			case <-k.stop:
				<-res
			}
			return checkResult{}, false
		}
	}
}

func (k *keepAlive) loseUnconfirmed(confirmed, now time.Time) {
	k.lose(&LostError{
		Cause:       fmt.Errorf("%w since %s", errUnconfirmed, confirmed.Format("15:04:05.000")),
		Unconfirmed: now.Sub(confirmed),
		StopBy:      confirmed.Add(k.timing.Fence),
	})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
