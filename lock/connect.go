package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/migrun/migrun/internal/dbconn"
)

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

// retry connects through dbconn.Retry, in the lock's terms.
func (o Options) retry(ctx context.Context, what string, dial func(ctx context.Context) error) error {
	err := dbconn.Retry(ctx, o.ConnectTimeout, o.Logger, what, dial)
	if err != nil && ctx.Err() != nil {
		return ctxErr(ctx)
	}
	if errors.Is(err, dbconn.ErrSettings) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
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
