// Package lock provides the advisory locks that let exactly one migrun
// migrate a database at a time.
//
// A Locker is bound to one dedicated database connection (or one lock file).
// Waiting never holds a transaction or snapshot open, and holding takes no
// snapshot (in transaction mode the keep-alive's check is an empty
// statement), so runners can never get in the way of the migration that
// holds the lock (CREATE INDEX CONCURRENTLY waits for every transaction
// that had a snapshot when it looked).
//
// A held database lock is guarded on both ends. The lock's session tells
// the server to end it when migrun has been silent for Timing.ServerBound
// (and to end it for nothing else: the role's statement and idle timeouts
// are switched off for it), so a vanished holder frees the lock within
// DeadHolderTimeout. The holder confirms the lock every KeepAlive without
// ever putting a deadline on the connection (that would close it and free
// the lock), and reports the lock Lost StopLead before the server could
// free it unheard, so the command can be stopped in time.
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
	// mode on MySQL) or each other (TimingError).
	ErrUnsupported = errors.New("unsupported lock configuration")
	// ErrLost: the lock was lost, or can no longer be vouched for, while
	// held. Err returns a *LostError, which wraps it.
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

// Options configure a Locker. Zero values take the defaults.
type Options struct {
	Name string // what is locked; runners with the same name exclude each other
	Mode Mode   // default ModeSession
	// ConnectTimeout bounds how long the database may leave migrun
	// without an answer while it connects and waits for the lock
	// (measured from its last answer, across reconnections); then Lock
	// fails with ErrUnavailable. Default 60s.
	ConnectTimeout time.Duration
	// KeepAlive is the interval of the held lock's confirmations. Default 5s.
	KeepAlive time.Duration
	// DeadHolderTimeout bounds how long a holder that vanished (its node
	// gone, its packets dropped) keeps the lock: the server frees it
	// within this. Default 30s, or the least that fits KeepAlive and
	// StopLead when that is more (a default never makes the options
	// invalid). See Timing.
	DeadHolderTimeout time.Duration
	// StopLead is how long before the server could free a lock it no
	// longer hears about the holder reports it Lost: the time the command
	// needs to stop, and a margin. Default 11s.
	StopLead time.Duration
	// Identity names migrun's connections on the server: PostgreSQL's
	// application_name (63 bytes kept), MySQL's program_name connection
	// attribute. Default "migrun".
	Identity string
	Logger   *slog.Logger // default slog.Default()
	// CommandIdentity names the database sessions of a holder's
	// command (PostgreSQL's application_name) from the holder's
	// Identity, so that a waiter can say what the holder's migration is
	// doing; "" or nil: not looked for.
	CommandIdentity func(holderIdentity string) string
	// ProgressInterval is how often a waiter logs who holds the lock,
	// how long it has waited and how long it has left. Default 30s.
	ProgressInterval time.Duration
	// BeforeWait, when set, is called before Lock starts to wait: for a
	// lock held by another runner (once, before it logs so), or through
	// the takeover guard. It is for what the caller must have in place
	// while Lock waits (its signal handling), without holding up a Lock
	// that need not wait. It may be called more than once.
	BeforeWait func()
}

// Locker is one runner's handle on the lock, for one Lock and Unlock.
type Locker interface {
	// Lock connects (retrying within ConnectTimeout, also after a connection
	// lost while waiting) and blocks until the lock is held. While the lock
	// is held by another runner it logs who holds it, at once and every
	// ProgressInterval. It returns a *TimeoutError, which wraps ErrTimeout,
	// when ctx's deadline passes first, ErrUnavailable
	// when the database cannot be reached, or ctx.Err() when ctx is cancelled.
	// A runner that takes the lock right after a database restart, or
	// right after its own connection was lost, holds it for
	// Timing.TakeoverGuard before returning (see Timing).
	Lock(ctx context.Context) error
	// Unlock releases the lock, stops the keep-alive and closes the
	// connection, within ctx (closing the connection when ctx runs out,
	// which frees the lock too). A lock that was lost or not confirmed is
	// released by closing. It is safe to call after a failed Lock and
	// more than once.
	Unlock(ctx context.Context) error
	// Lost is closed when the held lock is lost or can no longer be
	// vouched for; Err then returns the *LostError saying why and by when
	// the command must have stopped. Lost is final.
	Lost() <-chan struct{}
	Err() error
	// String describes the lock for logs, e.g. `postgresql advisory lock (123, 456) "app"`.
	String() string
}

// LostError is why a held lock was reported Lost.
type LostError struct {
	Lock  string // the Locker's String
	Cause error
	// Definite: the server said the lock is gone, or the connection is
	// (closed, reset, FATAL). Otherwise the lock has not been confirmed
	// for Unconfirmed (as of the report), and the server may free it a
	// second after StopBy.
	Definite    bool
	Unconfirmed time.Duration
	// StopBy is when the command must have stopped: for a definite loss
	// the moment it was found; otherwise the earliest the server could
	// free the lock, less a second (Timing.Fence after the send of the
	// last answered check). It may be past already when migrun itself
	// was paused.
	StopBy time.Time
}

func (e *LostError) Error() string {
	if e.Definite {
		return fmt.Sprintf("lock connection lost: %s: %v", e.Lock, e.Cause)
	}
	return fmt.Sprintf("lock not confirmed for %s: %s: %v; the command must have stopped by %s, a second before the database may free the lock",
		e.Unconfirmed.Round(100*time.Millisecond), e.Lock, e.Cause, e.StopBy.Format("15:04:05.000Z07:00"))
}

func (e *LostError) Unwrap() []error { return []error{ErrLost, e.Cause} }

// Defaults for Options.
const (
	DefaultConnectTimeout    = 60 * time.Second
	DefaultKeepAlive         = 5 * time.Second
	DefaultDeadHolderTimeout = 30 * time.Second
	DefaultStopLead          = 11 * time.Second
	DefaultIdentity          = "migrun"
	// MaxDeadHolderTimeout is the longest the kernel's keep-alive
	// settings can keep (about 9 hours).
	MaxDeadHolderTimeout = dbconn.MaxDeadPeerBound + serverSlack
)

// Fixed parts of the timing.
const (
	// serverSlack: the server frees a silent holder's lock up to this
	// after ServerBound (its keep-alive probes go out once a second), so
	// ServerBound is DeadHolderTimeout less this and a second of margin.
	serverSlack = 2 * time.Second
	// fenceMargin: the holder stops its command this long before the
	// server could free the lock (timer granularity, clock rates, a
	// pool-of-threads server's coarse clock).
	fenceMargin = time.Second
	// wakeGrace: what a fresh check gets after migrun itself was paused.
	wakeGrace = time.Second
)

// Timing is what the options mean for a held database lock, derived by
// TimingFor. With the defaults (KeepAlive 5s, DeadHolderTimeout 30s,
// StopLead 11s): ServerBound 28s, Fence 27s, StopAfterUnconfirmed 16s,
// ToleratedStall 11s, TakeoverGuard 28s.
type Timing struct {
	// ServerBound (L) = DeadHolderTimeout − 2 s, in whole seconds. The
	// lock's session asks the server to end it after L without a word
	// from migrun (PostgreSQL: tcp_user_timeout L, keep-alive probes one
	// a second from L/2 on, see dbconn.DeadPeerWithin; MySQL/MariaDB:
	// wait_timeout L). So the server
	// frees the lock of a holder that fell silent no sooner than L after
	// the holder's last answered check was sent, and no later than L + 1 s
	// after its last packet: within DeadHolderTimeout of vanishing.
	ServerBound time.Duration
	// Fence = L − 1 s: the holder's command must have stopped this long
	// after the send of the last check the server answered.
	Fence time.Duration
	// StopAfterUnconfirmed = Fence − StopLead: a held lock not confirmed
	// for this long after the send of the last answered check is reported
	// Lost (Definite false, StopBy at Fence), StopLead before the fence.
	StopAfterUnconfirmed time.Duration
	// ToleratedStall = StopAfterUnconfirmed − KeepAlive: how long one
	// check may go unanswered (a stalled network, a busy server) without
	// the lock being reported. A check that is merely slow never closes
	// the connection.
	ToleratedStall time.Duration
	// TakeoverGuard = L: a runner that takes the lock on a server up for
	// less than L, or on its first try after its own connection was lost
	// and re-established (a restart, a failover), holds it until L after
	// the server's start, or L after taking it, before Lock returns: a
	// holder the lost server could not tell has stopped by its fence.
	TakeoverGuard time.Duration
	// WakeGrace: after migrun itself was paused (a frozen process), the
	// lock is confirmed afresh at once, and declared lost only if that
	// check is not answered within WakeGrace.
	WakeGrace time.Duration
	// KeepAlive is Options.KeepAlive, or its default.
	KeepAlive time.Duration
}

// TimingError: the options leave no room between the keep-alive and the
// fence. Min is the least DeadHolderTimeout that fits the others.
type TimingError struct {
	DeadHolderTimeout, KeepAlive, StopLead, Min time.Duration
}

func (e *TimingError) Error() string {
	return fmt.Sprintf("dead-holder timeout %s is too short for keep-alive interval %s and stop lead %s: it must be at least %s (2 × keep-alive + stop lead + 3s, in whole seconds)",
		e.DeadHolderTimeout, e.KeepAlive, e.StopLead, e.Min)
}

func (e *TimingError) Unwrap() error { return ErrUnsupported }

// TimingFor derives the timing of a held lock from the options (zero
// values taking the defaults). It fails with a *TimingError, which wraps
// ErrUnsupported, unless StopAfterUnconfirmed is at least two keep-alive
// intervals: DeadHolderTimeout ≥ 2 × KeepAlive + StopLead + 3 s.
func TimingFor(opts Options) (Timing, error) {
	opts = opts.withDefaults()
	if opts.KeepAlive < 0 || opts.StopLead < 0 {
		return Timing{}, fmt.Errorf("%w: negative keep-alive interval %s or stop lead %s", ErrUnsupported, opts.KeepAlive, opts.StopLead)
	}
	if opts.DeadHolderTimeout > MaxDeadHolderTimeout {
		return Timing{}, fmt.Errorf("%w: dead-holder timeout %s is over the most TCP keep-alive can keep, %s", ErrUnsupported, opts.DeadHolderTimeout, MaxDeadHolderTimeout)
	}
	l := (opts.DeadHolderTimeout - serverSlack).Truncate(time.Second)
	least := minDeadHolder(opts.KeepAlive, opts.StopLead)
	t := Timing{
		ServerBound:   l,
		Fence:         l - fenceMargin,
		TakeoverGuard: l,
		WakeGrace:     wakeGrace,
		KeepAlive:     opts.KeepAlive,
	}
	t.StopAfterUnconfirmed = t.Fence - opts.StopLead
	t.ToleratedStall = t.StopAfterUnconfirmed - opts.KeepAlive
	if opts.DeadHolderTimeout < least {
		return Timing{}, &TimingError{
			DeadHolderTimeout: opts.DeadHolderTimeout, KeepAlive: opts.KeepAlive, StopLead: opts.StopLead, Min: least,
		}
	}
	return t, nil
}

// minDeadHolder is the least DeadHolderTimeout that leaves
// StopAfterUnconfirmed two keep-alive intervals (and ServerBound at
// least 2 s): whole seconds, as ServerBound is.
func minDeadHolder(keepAlive, stopLead time.Duration) time.Duration {
	l := (2*keepAlive + stopLead + fenceMargin + time.Second - 1).Truncate(time.Second)
	return max(l, 2*time.Second) + serverSlack
}

func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = ModeSession
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.StopLead == 0 {
		o.StopLead = DefaultStopLead
	}
	if o.DeadHolderTimeout <= 0 {
		o.DeadHolderTimeout = max(DefaultDeadHolderTimeout, minDeadHolder(o.KeepAlive, o.StopLead))
	}
	if o.Identity == "" {
		o.Identity = DefaultIdentity
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	return o
}

// New validates the options against the database and each other and
// returns a Locker for it; it does no I/O. u may be nil for ModeNone.
func New(u *dburl.URL, opts Options) (Locker, error) {
	opts = opts.withDefaults()
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
	if u.Adapter == dburl.SQLite3 {
		return newFile(u, opts), nil // no connection to guard: the timing does not apply
	}
	timing, err := TimingFor(opts)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Adapter == dburl.PostgreSQL:
		return newPostgres(u, opts, timing), nil
	case u.IsMySQL():
		return newMySQL(u, opts, timing), nil
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

var (
	_ Locker = nop{}
	_ Locker = (*pgLocker)(nil)
	_ Locker = (*myLocker)(nil)
	_ Locker = (*fileLocker)(nil)
)
