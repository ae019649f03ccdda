package lock

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/migrun/migrun/dburl"
)

// fileLocker holds an exclusive flock on a file beside a sqlite3
// database, for local runs and development. The kernel frees it when
// migrun exits, however it exits.
type fileLocker struct {
	path string
	opts Options
	f    *os.File
}

func newFile(u *dburl.URL, opts Options) *fileLocker {
	path := u.Database + ".migrun.lock"
	if opts.Name != u.Database {
		// Another name is another lock: a file of its own beside the database.
		path = fmt.Sprintf("%s.%s.migrun.lock", u.Database, safeName(opts.Name))
	}
	return &fileLocker{path: path, opts: opts}
}

// safeName makes a lock name usable in a file name: other characters
// become '_', and a hash keeps distinct names distinct.
func safeName(name string) string {
	clean := []rune(name)
	for i, r := range clean {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			clean[i] = '_'
		}
	}
	sum := sha256.Sum256([]byte(name))
	short := string(clean)
	if len(short) > 40 {
		short = short[:40]
	}
	return fmt.Sprintf("%s-%x", short, sum[:4])
}

func (l *fileLocker) String() string { return fmt.Sprintf("file lock %s", l.path) }

// Lost never fires: the kernel keeps a flock for as long as migrun runs.
func (l *fileLocker) Lost() <-chan struct{} { return nil }
func (l *fileLocker) Err() error            { return nil }

func (l *fileLocker) Lock(ctx context.Context) error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("%w: open lock file: %w", ErrUnavailable, err)
	}
	fd := int(f.Fd())
	err = flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		l.f = f
		return nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return fmt.Errorf("%w: lock %s: %w", ErrUnavailable, l.path, err)
	}
	if l.opts.BeforeWait != nil {
		l.opts.BeforeWait()
	}
	l.opts.Logger.Info("lock is held by another runner; waiting", "lock", l.String())
	// Wait in the kernel, which hands the lock over the moment the holder
	// releases it (or dies): no polling, no delay. A blocked flock(2)
	// cannot be interrupted, so it waits on a goroutine (and thread) of its
	// own; when ctx ends first it is abandoned, and gives the lock back
	// should it get it later.
	got := make(chan error, 1)
	go func() { got <- flock(fd, syscall.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return fmt.Errorf("%w: lock %s: %w", ErrUnavailable, l.path, err)
		}
		l.f = f
		return nil
	case <-ctx.Done():
		go func() {
			if <-got == nil {
				_ = flock(fd, syscall.LOCK_UN)
			}
			f.Close()
		}()
		return ctxErr(ctx)
	}
}

// flock is flock(2), restarted when a signal interrupts it.
func flock(fd, how int) error {
	for {
		err := syscall.Flock(fd, how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func (l *fileLocker) Unlock(context.Context) error {
	if l.f == nil {
		return nil
	}
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
	return err
}
