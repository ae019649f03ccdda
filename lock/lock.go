// Package lock provides the advisory locks that let exactly one migrun
// migrate a database at a time.
//
// A Locker is bound to one dedicated database connection (or one lock file).
// Waiting never holds a transaction or snapshot open, so waiters can never get
// in the way of the migration that holds the lock (CREATE INDEX CONCURRENTLY
// waits for every open snapshot).
package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// Sentinel errors callers branch on.
var (
	// ErrTimeout: the lock was not acquired before the context's deadline.
	ErrTimeout = errors.New("lock not acquired in time")
	// ErrUnavailable: the database could not be reached within the connect
	// timeout, or refused us (authentication, missing database, TLS).
	ErrUnavailable = dbconn.ErrUnavailable
	// ErrUnsupported: the options do not fit the database (e.g. transaction
	// mode on MySQL).
	ErrUnsupported = errors.New("unsupported lock configuration")
	// ErrLost: the lock connection was lost while the lock was held.
	ErrLost = errors.New("lock connection lost")
)

// Mode is how the lock is held.
type Mode string

const (
	// ModeSession holds a session-level advisory lock on a dedicated connection.
	ModeSession Mode = "session"
	// ModeTransaction holds pg_advisory_xact_lock inside an open transaction,
	// which survives PgBouncer transaction pooling (PostgreSQL only).
	ModeTransaction Mode = "transaction"
	// ModeNone takes no lock.
	ModeNone Mode = "none"
)

// Options configure a Locker.
type Options struct {
	Name           string        // what is locked; runners with the same name exclude each other
	Mode           Mode          // default ModeSession
	ConnectTimeout time.Duration // keep retrying to connect this long; default 60s
	KeepAlive      time.Duration // interval of the keep-alive check while held; default 10s
	Logger         *slog.Logger  // default slog.Default()
}

// Locker is one runner's handle on the lock.
type Locker interface {
	// Lock connects (retrying within ConnectTimeout, also after a connection
	// lost while waiting) and blocks until the lock is held. It returns an
	// error wrapping ErrTimeout when ctx's deadline passes first, ErrUnavailable
	// when the database cannot be reached, or ctx.Err() when ctx is cancelled.
	Lock(ctx context.Context) error
	// Unlock releases the lock, stops the keep-alive and closes the connection.
	// It is safe to call after a failed Lock and more than once.
	Unlock(ctx context.Context) error
	// Lost is closed when the keep-alive finds the lock no longer held (the
	// connection was cut, the backend terminated); Err then says why.
	Lost() <-chan struct{}
	Err() error
	// String describes the lock for logs, e.g. `postgresql advisory lock (123, 456) "app"`.
	String() string
}

// Defaults for Options.
const (
	DefaultConnectTimeout = 60 * time.Second
	DefaultKeepAlive      = 10 * time.Second
)

// New validates the options against the database and returns a Locker
// for it; it does no I/O. u may be nil for ModeNone.
func New(u *dburl.URL, opts Options) (Locker, error) {
	if opts.Mode == "" {
		opts.Mode = ModeSession
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	switch opts.Mode {
	case ModeNone:
		return nop{}, nil
	case ModeSession, ModeTransaction:
	default:
		return nil, fmt.Errorf("%w: unknown lock mode %q", ErrUnsupported, opts.Mode)
	}
	if u == nil {
		return nil, fmt.Errorf("%w: no database to lock", ErrUnsupported)
	}
	if opts.Name == "" {
		return nil, fmt.Errorf("%w: empty lock name", ErrUnsupported)
	}
	if opts.Mode == ModeTransaction && u.Adapter != dburl.PostgreSQL {
		return nil, fmt.Errorf("%w: lock mode transaction is for PostgreSQL only, not %s", ErrUnsupported, u.Adapter)
	}
	switch {
	case u.Adapter == dburl.PostgreSQL:
		return newPostgres(u, opts), nil
	case u.IsMySQL():
		return newMySQL(u, opts), nil
	case u.Adapter == dburl.SQLite3:
		return newFile(u, opts), nil
	}
	return nil, fmt.Errorf("%w: no lock for adapter %s", ErrUnsupported, u.Adapter)
}

// nop is the Locker of ModeNone.
type nop struct{}

func (nop) Lock(context.Context) error   { return nil }
func (nop) Unlock(context.Context) error { return nil }
func (nop) Lost() <-chan struct{}        { return nil }
func (nop) Err() error                   { return nil }
func (nop) String() string               { return "no lock" }
