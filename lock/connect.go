package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// permanentError marks a connection failure that retrying cannot fix:
// refused credentials, a missing database, a TLS mismatch.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// maxAttemptTimeout bounds one connection attempt.
const maxAttemptTimeout = 10 * time.Second

// connectRetrying calls dial until it succeeds, fails permanently, or the
// connect timeout has passed since the first attempt. It returns errors
// wrapping ErrUnavailable, or ctx's error.
func connectRetrying(ctx context.Context, opts Options, what string, dial func(ctx context.Context) error) error {
	deadline := time.Now().Add(opts.ConnectTimeout)
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		attemptTimeout := min(time.Until(deadline), maxAttemptTimeout)
		if attemptTimeout < 100*time.Millisecond {
			attemptTimeout = 100 * time.Millisecond
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := dial(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctxErr(ctx)
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("%w: connect to %s: %w", ErrUnavailable, what, perm.err)
		}
		if time.Until(deadline) <= 0 {
			return fmt.Errorf("%w: connect to %s: gave up after %s (%d attempts): %w", ErrUnavailable, what, opts.ConnectTimeout, attempt, err)
		}
		opts.Logger.Info("database not reachable yet; retrying", "database", what, "attempt", attempt, "err", err)
		if err := sleep(ctx, min(jitter(backoff), time.Until(deadline))); err != nil {
			return err
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

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

// jitter spreads d by ±20%, so waiters woken together do not retry in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// keepAlive runs check every interval until stop is closed; the first
// failure is recorded with lost and ends it.
type keepAlive struct {
	stop   chan struct{}
	done   chan struct{}
	lostCh chan struct{}
	err    error // set before lostCh is closed
}

func newKeepAlive() *keepAlive {
	return &keepAlive{lostCh: make(chan struct{})}
}

func (k *keepAlive) start(interval time.Duration, log *slog.Logger, what string, check func(ctx context.Context) error) {
	k.stop, k.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(k.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-k.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), max(interval, 5*time.Second))
			err := check(ctx)
			cancel()
			select {
			case <-k.stop: // failures while stopping are not a lost lock
				return
			default:
			}
			if err != nil {
				k.err = fmt.Errorf("%w: %s: %w", ErrLost, what, err)
				log.Error("lock lost", "lock", what, "err", err)
				close(k.lostCh)
				return
			}
		}
	}()
}

// halt stops the keep-alive and waits for it, so no check overlaps what
// the caller does next on the connection.
func (k *keepAlive) halt() {
	if k.stop == nil {
		return
	}
	select {
	case <-k.stop:
	default:
		close(k.stop)
	}
	<-k.done
}

func (k *keepAlive) Lost() <-chan struct{} { return k.lostCh }

func (k *keepAlive) Err() error {
	select {
	case <-k.lostCh:
		return k.err
	default:
		return nil
	}
}
