package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// pgLocker holds a PostgreSQL advisory lock in the two-int4 key space,
// which never overlaps Rails' single-bigint migration lock.
type pgLocker struct {
	*keepAlive
	u       *dburl.URL
	opts    Options
	k1, k2  int32
	channel string // LISTEN/NOTIFY channel of this key
	conn    *pgx.Conn
	held    bool
	// listening: LISTEN has run on conn. Only a runner that found the
	// lock held needs it, so the uncontended path saves the round trip.
	listening bool
	pid       int32 // the server session that took the lock
}

// pollInterval bounds how long a session-mode waiter relies on the
// holder's NOTIFY alone: it wakes waiters at once when the lock is
// released, but a holder that dies frees the lock without sending one.
const pollInterval = 2 * time.Second

func newPostgres(u *dburl.URL, opts Options) *pgLocker {
	h := fnv.New64a()
	h.Write([]byte("migrun:" + opts.Name))
	sum := h.Sum64()
	return &pgLocker{
		keepAlive: newKeepAlive(),
		u:         u,
		opts:      opts,
		k1:        int32(sum >> 32),
		k2:        int32(sum),
		channel:   fmt.Sprintf("migrun_lock_%016x", sum),
	}
}

func (p *pgLocker) String() string {
	mode := ""
	if p.opts.Mode == ModeTransaction {
		mode = " in a transaction"
	}
	return fmt.Sprintf("postgresql advisory lock (%d, %d)%s %q on %s", p.k1, p.k2, mode, p.opts.Name, dbconn.PostgresAddr(p.u))
}

func (p *pgLocker) connect(ctx context.Context) error {
	cfg, err := dbconn.PostgresConfig(p.u)
	if err != nil {
		return err
	}
	return p.opts.retry(ctx, dbconn.PostgresAddr(p.u), func(ctx context.Context) error {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return dbconn.ClassifyPostgres(err, cfg)
		}
		p.conn, p.listening = conn, false
		return nil
	})
}

func (p *pgLocker) Lock(ctx context.Context) error {
	// Transaction mode can only poll: start often, back off to the bound.
	// Session mode is woken by NOTIFY and polls only for a dead holder.
	backoff := 50 * time.Millisecond
	if p.opts.Mode == ModeSession {
		backoff = pollInterval
	}
	announced := false
	for {
		if p.conn == nil {
			if err := p.connect(ctx); err != nil {
				return err
			}
		}
		ok, err := p.try(ctx)
		if errors.Is(err, errPooled) {
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctxErr(ctx)
			}
			if err := p.dropBroken(err); err != nil {
				return err
			}
			continue
		}
		if ok {
			return p.acquired(ctx)
		}
		if p.opts.Mode == ModeSession && !p.listening {
			// LISTEN, then try again at once: a release between the
			// failed try and the LISTEN sent a NOTIFY nobody heard.
			if _, err := p.conn.Exec(ctx, "LISTEN "+p.channel); err != nil {
				if ctx.Err() != nil {
					return ctxErr(ctx)
				}
				if err := p.dropBroken(fmt.Errorf("listen: %w", err)); err != nil {
					return err
				}
				continue
			}
			p.listening = true
			continue
		}
		if !announced {
			p.opts.Logger.Info("lock is held by another runner; waiting", "lock", p.String())
			announced = true
		}
		if err := p.waitTurn(ctx, dbconn.Jitter(backoff)); err != nil {
			if ctx.Err() != nil {
				return ctxErr(ctx)
			}
			if err := p.dropBroken(err); err != nil {
				return err
			}
		}
		backoff = min(backoff*2, pollInterval)
	}
}

// try makes one attempt, holding no transaction or snapshot afterwards
// unless it got the lock in transaction mode.
func (p *pgLocker) try(ctx context.Context) (bool, error) {
	var ok bool
	if p.opts.Mode == ModeSession {
		// A session lock is re-entrant: through a transaction pooler, a
		// server session that already holds it for another runner would
		// grant it again. A fresh connection of ours never holds it, so a
		// session that does is shared, and this one statement (one server
		// session even through a pooler) refuses instead of taking it.
		var got *bool
		err := p.conn.QueryRow(ctx, `SELECT CASE WHEN EXISTS (`+heldHere+`) THEN NULL
			ELSE pg_try_advisory_lock($3, $4) END, pg_backend_pid()`, int64(uint32(p.k1)), int64(uint32(p.k2)), p.k1, p.k2).Scan(&got, &p.pid)
		if err == nil && got == nil {
			return false, errPooled
		}
		return err == nil && *got, err
	}
	if _, err := p.conn.Exec(ctx, "BEGIN"); err != nil {
		return false, err
	}
	if _, err := p.conn.Exec(ctx, "SET LOCAL idle_in_transaction_session_timeout = 0"); err != nil {
		return false, err
	}
	if err := p.conn.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1, $2)", p.k1, p.k2).Scan(&ok); err != nil {
		return false, err
	}
	if !ok {
		_, err := p.conn.Exec(ctx, "ROLLBACK")
		return false, err
	}
	return true, nil
}

// waitTurn waits up to d: in session mode for the holder's NOTIFY, which
// wakes waiters at once; in transaction mode (no LISTEN through a
// transaction pooler) simply d.
func (p *pgLocker) waitTurn(ctx context.Context, d time.Duration) error {
	if p.opts.Mode != ModeSession {
		return sleep(ctx, d)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err := p.conn.WaitForNotification(wctx)
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		return nil // the poll interval passed: try again
	}
	return err
}

// dropBroken closes a connection that failed, so the next round reconnects;
// errors the server answered with are returned instead.
func (p *pgLocker) dropBroken(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !p.conn.IsClosed() {
		return fmt.Errorf("acquire %s: %s (SQLSTATE %s)", p.String(), pgErr.Message, pgErr.Code)
	}
	p.opts.Logger.Warn("lock connection lost while waiting; reconnecting", "lock", p.String(), "err", dbconn.LastLine(err))
	p.close()
	return nil
}

// acquired checks that the lock is held by this very backend (through a
// transaction pooler the next statement may run on another one, and a
// session lock would then exclude nobody) and starts the keep-alive.
func (p *pgLocker) acquired(ctx context.Context) error {
	p.held = true
	ours, err := p.sameSession(ctx)
	if err != nil {
		p.Unlock(context.WithoutCancel(ctx))
		return fmt.Errorf("%w: verify %s: %s", ErrUnavailable, p.String(), dbconn.LastLine(err))
	}
	if !ours {
		p.Unlock(context.WithoutCancel(ctx))
		return errPooled
	}
	p.start(p.opts.KeepAlive, p.opts.Logger, p.String(), func(ctx context.Context) error {
		ours, err := p.ours(ctx)
		if err != nil {
			return errors.New(dbconn.LastLine(err))
		}
		if !ours {
			return errors.New("the lock is no longer held by migrun's database session")
		}
		return nil
	})
	return nil
}

// errPooled: the lock and this connection's statements are not bound to
// one server session, the sign of a transaction pooler in between.
var errPooled = fmt.Errorf("%w: migrun's statements do not all run in one database session: is a transaction pooler (PgBouncer pool_mode=transaction) in between? Use MIGRUN_LOCK_MODE=transaction", ErrUnsupported)

// heldHere finds the two-int4 advisory lock ($1, $2 as oids) held by this
// server session.
const heldHere = `SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid AND objsubid = 2
		  AND pid = pg_backend_pid() AND granted`

// sameSession reports whether this statement runs in the server session
// whose try took the lock (in session mode; in transaction mode the lock
// is checked in pg_locks). Cheaper than reading pg_locks again, and the
// same answer: the try just took the lock in that session.
func (p *pgLocker) sameSession(ctx context.Context) (bool, error) {
	if p.opts.Mode != ModeSession {
		return p.ours(ctx)
	}
	var pid int32
	err := p.conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	return err == nil && pid == p.pid, err
}

// ours reports whether this backend holds the lock.
func (p *pgLocker) ours(ctx context.Context) (bool, error) {
	var ok bool
	err := p.conn.QueryRow(ctx, "SELECT EXISTS ("+heldHere+")", int64(uint32(p.k1)), int64(uint32(p.k2))).Scan(&ok)
	return ok, err
}

func (p *pgLocker) Unlock(ctx context.Context) error {
	p.halt()
	if p.conn == nil {
		return nil
	}
	defer p.close()
	if !p.held {
		return nil
	}
	p.held = false
	if p.opts.Mode == ModeTransaction {
		if _, err := p.conn.Exec(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("release %s: %s", p.String(), dbconn.LastLine(err))
		}
		return nil
	}
	// Unlock and wake the waiters; the NOTIFY is delivered when this
	// statement commits, after the unlock.
	var released bool
	err := p.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1, $2), pg_notify($3, '')::text",
		p.k1, p.k2, p.channel).Scan(&released, new(string))
	if err != nil {
		return fmt.Errorf("release %s: %s", p.String(), dbconn.LastLine(err))
	}
	if !released {
		// Closing the connection frees it, unless a pooler keeps the
		// server session that holds it.
		return fmt.Errorf("release %s: this database session did not hold it: %w", p.String(), errPooled)
	}
	return nil
}

func (p *pgLocker) close() {
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.conn.Close(ctx)
		p.conn = nil
	}
}
