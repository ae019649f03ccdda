package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/migrun/migrun/internal/dbconn"
)

// maxStatement bounds each statement a runner sends before it holds the
// lock (and each wait for an answer beyond a GET_LOCK's own wait): a
// server that stops answering is noticed by then, not at the lock timeout.
const maxStatement = 5 * time.Second

// releaseTimeout bounds Unlock when the caller's context does not;
// running out closes the connection, which frees the lock too.
const releaseTimeout = 10 * time.Second

// ctxErr is the error for a context that ended while waiting: ErrTimeout
// when its deadline passed, its own error when it was cancelled.
func ctxErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrTimeout) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-t.C:
		return nil
	}
}

// budget is how long the database may leave a runner without an answer
// (Options.ConnectTimeout), counted from its last answer: statements,
// waits and reconnections while acquiring all spend the same budget.
type budget struct {
	timeout time.Duration
	what    string    // the database, for errors
	last    time.Time // the last answer (or the start)
}

func newBudget(timeout time.Duration, what string) *budget {
	return &budget{timeout: timeout, what: what, last: time.Now()}
}

// answered records an answer from the database, received at t.
func (b *budget) answered(t time.Time) { b.last = t }

// deadline is when the budget runs out.
func (b *budget) deadline() time.Time { return b.last.Add(b.timeout) }

// exhausted is the error for a database that stayed silent too long.
func (b *budget) exhausted() error {
	return fmt.Errorf("%w: %s has not answered for %s", ErrUnavailable, b.what, time.Since(b.last).Round(100*time.Millisecond))
}

// statement bounds one statement (or wait) of extra beyond the time the
// server itself is asked to wait: maxStatement, and never past the budget.
func (b *budget) statement(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc, error) {
	left := time.Until(b.deadline())
	if left <= 0 {
		return nil, nil, b.exhausted()
	}
	sctx, cancel := context.WithTimeout(ctx, min(wait+maxStatement, left))
	return sctx, cancel, nil
}

// retry connects through dbconn.RetryUntil within what is left of the
// budget, in the lock's terms.
func (o Options) retry(ctx context.Context, b *budget, dial func(ctx context.Context) error) error {
	if time.Until(b.deadline()) <= 0 {
		return b.exhausted()
	}
	err := dbconn.RetryUntil(ctx, b.deadline(), o.Logger, b.what, func(ctx context.Context) error {
		if err := dial(ctx); err != nil {
			return err
		}
		b.answered(time.Now())
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return ctxErr(ctx)
	}
	if errors.Is(err, dbconn.ErrSettings) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}

// releaseContext bounds Unlock by releaseTimeout when ctx has no
// deadline of its own.
func releaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, releaseTimeout)
}

// takeover is why a runner that just took the lock waits before
// returning it: the lock may have been freed by a lost server rather
// than released by its holder, which stops its command only by its
// fence. It returns the zero time when no wait is needed.
//
//   - upFor < L: the server started upFor before answeredAt; it freed
//     every lock of its previous life then, so a holder from then has
//     stopped by start + L.
//   - firstAfterLoss: this runner's connection broke and this is its
//     first try on the new one. The lock may have been freed (by a
//     restart, a failover) at any time up to answeredAt, so a holder from
//     then has stopped by answeredAt + L. Measured from the acquisition,
//     not from the connection loss: after a failover the old server may
//     have served the old holder well after this runner lost it.
func takeover(t Timing, answeredAt time.Time, upFor time.Duration, firstAfterLoss bool) (until time.Time, why string) {
	if firstAfterLoss {
		until, why = answeredAt.Add(t.TakeoverGuard), "the lock was free on the first try after the connection to the database was lost and re-established"
	}
	if upFor >= 0 && upFor < t.TakeoverGuard {
		if u := answeredAt.Add(t.TakeoverGuard - upFor); u.After(until) {
			until, why = u, fmt.Sprintf("the database started %s ago", upFor.Round(100*time.Millisecond))
		}
	}
	return until, why
}

// guard holds the just-taken lock until until, keeping it confirmed, so
// a holder that lost it unawares has stopped first. It returns an error
// when ctx ends or the lock is lost meanwhile; the caller then releases.
func guard(ctx context.Context, o Options, what string, ka *keepAlive, until time.Time, why string) error {
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	if o.BeforeWait != nil {
		o.BeforeWait()
	}
	o.Logger.Warn("lock taken, but holding it before running: "+why+"; a runner that held the lock there may not know yet, and stops its command by then",
		"lock", what, "wait", wait.Round(100*time.Millisecond))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		o.Logger.Info("lock guard time over", "lock", what)
		return nil
	case <-ka.Lost():
		return fmt.Errorf("%w: the lock was lost while holding it before running: %w", ErrUnavailable, ka.Err())
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}
