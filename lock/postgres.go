package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/backoff"
	"github.com/migrun/migrun/internal/dbconn"
)

// pgLocker holds a PostgreSQL advisory lock in the two-int4 key space,
// which never overlaps Rails' single-bigint migration lock.
type pgLocker struct {
	ka     *keepAlive
	u      *dburl.URL
	opts   Options
	timing Timing
	k1, k2 int32
	// channel names the key's LISTEN/NOTIFY channels: a waiter listens on
	// its own, channel_<backend pid> (waiterChannel). (Waiters of migrun
	// versions before the queue listen on channel itself, which nobody
	// notifies now: they find the lock free by their poll.)
	channel string
	// q1, q2: the key of the queue, a shared advisory lock every
	// session-mode waiter holds while it waits (see wakeSQL).
	q1, q2 int32
	conn   *pgx.Conn
	held   bool
	// listening: LISTEN has run on conn; queued: conn holds the queue's
	// shared lock. Only a runner that found the lock held needs them, so
	// the uncontended path saves the round trip.
	listening, queued bool
	// fresh: nothing has run on conn yet; the session's settings go
	// with its first statement.
	fresh bool
	// lostConn: a connection of this runner broke while it waited; its
	// next connection's first try may take a lock a lost server freed.
	lostConn bool
	budget   *budget
	pid      int32 // the server session that took the lock
	// noSettings: the server refused the session's settings; go on
	// without them (warned once).
	noSettings bool
	// settings are the session's settings as the server showed them
	// after setting them.
	settings map[string]string
	warned   bool
	// pooled: the backend is not the one the connection's startup named:
	// a pooler or proxy is in between.
	pooled bool
	report *waitReport // while Lock waits
	// askProbe: ProbeStartupOptions was called.
	askProbe bool
	// probe is what the lock's connection found out about startup
	// options; nil until known.
	probe *dbconn.OptionsProbe
	// probing: conn carries the probe's options, and its next try reads
	// the answer.
	probing bool
}

// pollInterval bounds how long a session-mode waiter relies on being
// woken: a release wakes the two longest-waiting runners at once (wakeSQL),
// but a holder that dies frees the lock without waking anyone, and a
// waiter further back in the queue is woken only when its turn comes.
const pollInterval = 2 * time.Second

// wakeAtRelease is how many waiters a release wakes, longest-waiting
// first. One would do if every waiter were sure to act; the second takes
// the lock when the first cannot (a frozen Pod, a connection dying
// unnoticed), instead of everyone waiting for the poll. The loser of the
// two tries once and waits again: two tries per hand-off, not one per
// waiter.
const wakeAtRelease = 2

func newPostgres(u *dburl.URL, opts Options, timing Timing) *pgLocker {
	sum := keyOf("migrun:" + opts.Name)
	queue := keyOf("migrun-queue:" + opts.Name)
	p := &pgLocker{
		u:       u,
		opts:    opts,
		timing:  timing,
		k1:      int32(sum >> 32),
		k2:      int32(sum),
		q1:      int32(queue >> 32),
		q2:      int32(queue),
		channel: fmt.Sprintf("migrun_lock_%016x", sum),
	}
	p.ka = newKeepAlive(timing, opts.Logger, p.String())
	return p
}

// keyOf hashes a name into the two-int4 key space.
func keyOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// waiterChannel is the channel a waiter in backend pid listens on.
func (p *pgLocker) waiterChannel(pid int32) string {
	return fmt.Sprintf("%s_%d", p.channel, pid)
}

func (p *pgLocker) String() string {
	mode := ""
	if p.opts.Mode == ModeTransaction {
		mode = " in a transaction"
	}
	return fmt.Sprintf("postgresql advisory lock (%d, %d)%s %q on %s", p.k1, p.k2, mode, p.opts.Name, dbconn.PostgresAddr(p.u))
}

func (p *pgLocker) Lost() <-chan struct{} { return p.ka.Lost() }
func (p *pgLocker) Err() error            { return p.ka.Err() }

func (p *pgLocker) connect(ctx context.Context) error {
	cfg, err := dbconn.PostgresConfig(p.u)
	if err != nil {
		return err
	}
	dbconn.PostgresIdentity(cfg, p.opts.Identity)
	cfg.DialFunc = dbconn.DeadPeerWithin(p.timing.ServerBound).Dial
	return p.opts.retry(ctx, p.budget, func(ctx context.Context) error {
		conn, probing, err := p.dial(ctx, cfg)
		if err != nil {
			return err
		}
		p.conn, p.listening, p.queued, p.fresh, p.settings, p.pooled, p.probing = conn, false, false, true, nil, false, probing
		return nil
	})
}

// dial makes one connection. Until the probe's answer is known (when
// asked: ProbeStartupOptions), it first tries with the probe's startup
// options, as sessions.Probe does: a server that refuses them (PgBouncer)
// gets a second connection without them, which is the answer.
func (p *pgLocker) dial(ctx context.Context, cfg *pgx.ConnConfig) (conn *pgx.Conn, probing bool, err error) {
	if p.askProbe && p.probe == nil {
		withProbe := cfg.Copy()
		withProbe.RuntimeParams["options"] = dbconn.WithOptionsProbe(cfg.RuntimeParams["options"])
		conn, err := dbconn.ConnectPostgres(ctx, withProbe)
		if err == nil {
			return conn, true, nil
		}
		if ctx.Err() != nil {
			return nil, false, dbconn.ClassifyPostgres(err, withProbe)
		}
		// Is it the options? Connect without them.
		plain, perr := dbconn.ConnectPostgres(ctx, cfg)
		if perr != nil {
			return nil, false, dbconn.ClassifyPostgres(perr, cfg)
		}
		p.probe = &dbconn.OptionsProbe{Refused: dbconn.ClassifyPostgres(err, withProbe)}
		return plain, false, nil
	}
	conn, err = dbconn.ConnectPostgres(ctx, cfg)
	if err != nil {
		return nil, false, dbconn.ClassifyPostgres(err, cfg)
	}
	return conn, false, nil
}

// OptionsProber is a Locker that can find out on its own connection what
// sessions.Probe does: whether startup options (PGOPTIONS) reach the
// server. A run whose command uses the lock's database then needs no
// probe connection of its own, which on a small database host competes
// with the lock's connection for the CPU (a backend forked, SCRAM).
// PostgreSQL's Locker is one.
type OptionsProber interface {
	// ProbeStartupOptions asks it to; call it before Lock.
	ProbeStartupOptions()
	// OptionsProbed is the answer, known after a successful Lock; false
	// when it is not known.
	OptionsProbed() (dbconn.OptionsProbe, bool)
}

func (p *pgLocker) ProbeStartupOptions() { p.askProbe = true }

func (p *pgLocker) OptionsProbed() (dbconn.OptionsProbe, bool) {
	if p.probe == nil {
		return dbconn.OptionsProbe{}, false
	}
	return *p.probe, true
}

func (p *pgLocker) Lock(ctx context.Context) error {
	p.report = newWaitReport(p.opts, p.String())
	return p.report.outcome(p.lock(ctx))
}

func (p *pgLocker) lock(ctx context.Context) error {
	p.budget = newBudget(p.opts.ConnectTimeout, dbconn.PostgresAddr(p.u))
	// Transaction mode can only poll: start often, back off to the bound.
	// Session mode is woken by NOTIFY and polls only for a dead holder.
	poll := backoff.New(50*time.Millisecond, pollInterval)
	if p.opts.Mode == ModeSession {
		poll = backoff.New(pollInterval, pollInterval)
	}
	for {
		if p.conn == nil {
			if err := p.connect(ctx); err != nil {
				return err
			}
		}
		firstAfterLoss := p.fresh && p.lostConn
		got, err := p.try(ctx)
		if err != nil {
			if ctx.Err() != nil {
				p.close()
				return ctxErr(ctx)
			}
			if errors.Is(err, errPooled) {
				p.close()
				return err
			}
			if err := p.dropBroken(err); err != nil {
				return err
			}
			continue
		}
		p.lostConn = false
		if got.ok {
			return p.acquired(ctx, got, firstAfterLoss)
		}
		if p.opts.Mode == ModeSession && !p.queued {
			// Join the queue, then try again at once: a release between
			// the failed try and joining woke somebody else.
			first := !p.listening
			if err := p.enqueue(ctx, got.pid); err != nil {
				if ctx.Err() != nil {
					p.close()
					return ctxErr(ctx)
				}
				if err := p.dropBroken(fmt.Errorf("join the queue: %w", err)); err != nil {
					return err
				}
				continue
			}
			if first || p.queued {
				continue
			}
			// Not queued (a release was looking at the queue that very
			// instant): wait for the poll, and join at the next round.
		}
		p.report.held(ctx, p.describe)
		if err := p.waitTurn(ctx, min(poll.Next(), p.report.untilNext())); err != nil {
			if ctx.Err() != nil {
				p.close()
				return ctxErr(ctx)
			}
			if err := p.dropBroken(err); err != nil {
				return err
			}
		}
	}
}

// describe finds the holder on the waiter's connection, bounded like
// every statement of a waiter.
func (p *pgLocker) describe(ctx context.Context) (holder, bool, error) {
	sctx, cancel, err := p.budget.statement(ctx, 0)
	if err != nil {
		return holder{}, false, err
	}
	defer cancel()
	h, found, err := describePostgres(sctx, p.conn, p.k1, p.k2, p.opts.Mode, p.opts.CommandIdentity)
	if err == nil {
		p.budget.answered(time.Now())
	}
	return h, found, err
}

// enqueue makes this session a waiter a release can wake: it listens
// on its own channel and holds the queue's shared lock, by which a
// release finds it (wakeSQL). Neither holds a transaction or a
// snapshot. pid is the server session's, as the try saw it.
func (p *pgLocker) enqueue(ctx context.Context, pid int32) error {
	var sql strings.Builder
	if !p.listening {
		sql.WriteString("LISTEN " + p.waiterChannel(pid) + ";\n")
	}
	fmt.Fprintf(&sql, "SELECT pg_try_advisory_lock_shared(%d, %d)", p.q1, p.q2)
	sctx, cancel, err := p.budget.statement(ctx, 0)
	if err != nil {
		return err
	}
	defer cancel()
	results, err := p.conn.PgConn().Exec(sctx, sql.String()).ReadAll()
	if err != nil {
		return err
	}
	p.budget.answered(time.Now())
	p.listening = true
	last := results[len(results)-1]
	p.queued = len(last.Rows) == 1 && string(last.Rows[0][0]) == "t"
	return nil
}

// tryResult is what one attempt found.
type tryResult struct {
	ok         bool
	pid        int32
	upFor      time.Duration // since the server started; -1 if unknown
	sent, answ time.Time
}

// try makes one attempt, holding no transaction or snapshot afterwards
// unless it got the lock in transaction mode. It is one round trip: the
// session's settings (on a fresh connection, or inside the transaction)
// and the attempt in one simple-protocol message; behind a pooler, two.
func (p *pgLocker) try(ctx context.Context) (tryResult, error) {
	var sql strings.Builder
	withSettings := !p.noSettings && (p.fresh || p.opts.Mode == ModeTransaction)
	var settings []pgSetting
	direct := p.conn.PgConn().PID() // the backend we connected to, unless a pooler made it up
	if withSettings {
		settings = pgSettings(p.timing, serverMajor(p.conn.PgConn()))
	}
	switch {
	case p.opts.Mode == ModeTransaction:
		// Read committed: the transaction that holds the lock keeps no
		// snapshot between its statements, whatever the role's default.
		sql.WriteString("BEGIN ISOLATION LEVEL READ COMMITTED;\n")
		if withSettings {
			sql.WriteString(pgSettingsSQL(settings, true, 0) + ";\n")
		}
		fmt.Fprintf(&sql, "SELECT pg_try_advisory_xact_lock(%d, %d)", p.k1, p.k2)
	case !p.pooled:
		// In the backend we connected to, which is new and cannot hold
		// the lock yet. The settings, too, only there: through a pooler
		// a session setting could stay on a server connection other
		// clients get next.
		if withSettings {
			sql.WriteString(pgSettingsSQL(settings, false, direct) + ";\n")
		}
		fmt.Fprintf(&sql, "SELECT CASE WHEN pg_backend_pid() = %d THEN pg_try_advisory_lock(%d, %d) END", direct, p.k1, p.k2)
	default:
		// Behind a pooler. A session lock is re-entrant: through a
		// transaction pooler, a server session that already holds it for
		// another runner would grant it again. A fresh connection of ours
		// never holds it, so a session that does is shared, and this one
		// statement (one server session even through a pooler) refuses
		// instead of taking it. (Reading pg_locks costs milliseconds in
		// a new backend: the direct case does without.)
		fmt.Fprintf(&sql, "SELECT CASE WHEN EXISTS (%s) THEN NULL ELSE pg_try_advisory_lock(%d, %d) END", p.heldHere(), p.k1, p.k2)
	}
	sql.WriteString(", pg_backend_pid(), extract(epoch FROM now() - pg_postmaster_start_time())")
	// The probe's answer rides on the first try of a probing connection.
	probing := p.probing
	columns := 3
	if probing {
		sql.WriteString(", " + dbconn.OptionsProbeColumns)
		columns += 2
	}

	sctx, cancel, err := p.budget.statement(ctx, 0)
	if err != nil {
		return tryResult{}, err
	}
	defer cancel()
	r := tryResult{sent: time.Now(), upFor: -1}
	results, err := p.conn.PgConn().Exec(sctx, sql.String()).ReadAll()
	p.fresh = false
	if err != nil {
		var pgErr *pgconn.PgError
		settingsAt := 0 // the settings' statement, after BEGIN in transaction mode
		if p.opts.Mode == ModeTransaction {
			settingsAt = 1
		}
		if withSettings && failedAt(results) == settingsAt && errors.As(err, &pgErr) && refusedSetting(pgErr.Code) && !p.conn.IsClosed() {
			// The server refused a setting: warn, and go on without.
			p.opts.Logger.Warn("the database refused the lock session's settings; the lock is not protected from the role's timeouts, and a vanished holder's lock may stay held until the server's own TCP keep-alive gives up",
				"lock", p.String(), "err", fmt.Sprintf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code))
			p.noSettings, p.warned = true, true
			if p.opts.Mode == ModeTransaction {
				_ = p.exec(ctx, "ROLLBACK")
			}
			return p.try(ctx)
		}
		return tryResult{}, err
	}
	r.answ = time.Now()
	p.budget.answered(r.answ)
	last := results[len(results)-1]
	if len(last.Rows) != 1 || len(last.Rows[0]) != columns {
		return tryResult{}, fmt.Errorf("unexpected answer to the lock attempt: %d rows", len(last.Rows))
	}
	row := last.Rows[0]
	pid, err := strconv.ParseInt(string(row[1]), 10, 32)
	if err != nil {
		return tryResult{}, fmt.Errorf("unexpected backend pid %q", row[1])
	}
	if probing {
		p.readProbe(row[3], row[4])
	}
	r.pid = int32(pid)
	if p.opts.Mode == ModeSession && row[0] == nil {
		if p.pooled {
			return tryResult{}, errPooled
		}
		// Not the backend we connected to: a pooler or proxy is in
		// between. Try its way (nothing was taken, nothing set).
		p.pooled = true
		p.opts.Logger.Info("connected through a pooler or proxy: the lock's session settings are left alone (on a pooled server connection they would outlive migrun's); the pooler's own timeouts apply",
			"lock", p.String())
		return p.try(ctx)
	}
	r.ok = string(row[0]) == "t"
	if secs, err := strconv.ParseFloat(string(row[2]), 64); err == nil {
		r.upFor = time.Duration(secs * float64(time.Second))
	}
	if withSettings && len(results) >= 2 {
		p.settings = settingsOf(results[len(results)-2], settings)
	}
	if !r.ok && p.opts.Mode == ModeTransaction {
		if err := p.exec(ctx, "ROLLBACK"); err != nil {
			return tryResult{}, err
		}
	}
	return r, nil
}

// queryCanceled is SQLSTATE query_canceled: a statement_timeout, or a
// cancel request.
const queryCanceled = "57014"

// refusedSetting reports whether SQLSTATE code says the server will not
// take one of the lock session's settings (an unknown name, a value out of
// range, one the role may not change): going on without them is then the
// only way. Anything else, above all a statement cancelled by the very
// statement_timeout the settings switch off (57014) on a slow machine, is
// passing: the attempt fails and is made again, with the settings.
func refusedSetting(code string) bool {
	switch {
	case strings.HasPrefix(code, "42"), // undefined_object (an unknown setting), insufficient_privilege
		strings.HasPrefix(code, "22"), // invalid_parameter_value
		strings.HasPrefix(code, "0A"), // feature_not_supported
		code == "55P02":               // cant_change_runtime_param
		return true
	}
	return false
}

// readProbe records the probe's answer from its two columns
// (dbconn.OptionsProbeColumns). An answer it cannot read leaves the probe
// unknown (OptionsProbed is false), and the run asks with a probe of its
// own.
func (p *pgLocker) readProbe(setting, version []byte) {
	p.probing = false
	if got, err := dbconn.ReadOptionsProbe(setting, version); err == nil {
		p.probe = &got
	}
}

// failedAt is the index of the statement of a multi-statement message
// that failed: the first result with an error, else the one after the
// last result (it failed before it described its rows).
func failedAt(results []*pgconn.Result) int {
	for i, r := range results {
		if r.Err != nil {
			return i
		}
	}
	return len(results)
}

// pgSetting is one setting of the lock's session, in the server
// versions that have it (set_config of an unknown name fails the whole
// message).
type pgSetting struct {
	name, value string
	since       int // major version
}

// pgSettings make the lock's session end for nothing but a vanished
// client: no statement, lock, idle or transaction timeout, and the
// server's dead-client detection set to ServerBound (see
// dbconn.DeadPeer); those a server of major version has (0: unknown,
// taken as the oldest supported). Values are in the settings' base
// units, as the server shows them back.
func pgSettings(t Timing, major int) []pgSetting {
	dp := dbconn.DeadPeerWithin(t.ServerBound)
	all := []pgSetting{
		{"statement_timeout", "0", 0},
		{"lock_timeout", "0", 0},
		{"idle_in_transaction_session_timeout", "0", 0},
		{"idle_session_timeout", "0", 14},
		{"transaction_timeout", "0", 17},
		{"tcp_keepalives_idle", strconv.Itoa(int(dp.Idle / time.Second)), 0},
		{"tcp_keepalives_interval", strconv.Itoa(int(dp.Interval / time.Second)), 0},
		{"tcp_keepalives_count", strconv.Itoa(dp.Count), 0},
		{"tcp_user_timeout", strconv.Itoa(int(dp.UserTimeout / time.Millisecond)), 12},
	}
	var out []pgSetting
	for _, s := range all {
		if s.since <= major {
			out = append(out, s)
		}
	}
	return out
}

// serverMajor is the server's major version, from the server_version
// it reported at connection; 0 if unknown.
func serverMajor(c *pgconn.PgConn) int { return majorVersion(c.ParameterStatus("server_version")) }

// majorVersion reads "15.13 (Debian ...)", "9.6.24", "17beta1".
func majorVersion(v string) int {
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// pgSettingsSQL sets settings, for the transaction when local, and, when
// pid is not 0, only in the backend of that pid. Its one row shows each
// setting as the server has it after: for the tcp_* ones, what the
// socket really has.
func pgSettingsSQL(settings []pgSetting, local bool, pid uint32) string {
	calls := make([]string, len(settings))
	for i, s := range settings {
		calls[i] = fmt.Sprintf("set_config('%s', '%s', %t)", s.name, s.value, local)
	}
	sql := "SELECT " + strings.Join(calls, ", ")
	if pid != 0 {
		sql += fmt.Sprintf(" WHERE pg_backend_pid() = %d", pid)
	}
	return sql
}

// settingsOf reads pgSettingsSQL's answer: the value of each setting
// by name (none if it ran in no backend).
func settingsOf(r *pgconn.Result, settings []pgSetting) map[string]string {
	out := map[string]string{}
	if len(r.Rows) == 1 && len(r.Rows[0]) == len(settings) {
		for i, s := range settings {
			out[s.name] = string(r.Rows[0][i])
		}
	}
	return out
}

// warnUnprotected logs, once, the settings the server did not take.
func (p *pgLocker) warnUnprotected() {
	if p.warned || p.settings == nil {
		return
	}
	p.warned = true
	_, unix := p.conn.PgConn().Conn().(*net.UnixConn)
	var off []string
	for _, s := range pgSettings(p.timing, serverMajor(p.conn.PgConn())) {
		v, ok := p.settings[s.name]
		if !ok || (strings.HasPrefix(s.name, "tcp_") && unix) {
			continue // not set; or over a unix socket, whose end the OS sees
		}
		if v != s.value {
			off = append(off, fmt.Sprintf("%s is %s, not %s", s.name, v, s.value))
		}
	}
	if len(off) > 0 {
		p.opts.Logger.Warn("the database did not take all of the lock session's settings; the lock is not fully protected from the role's timeouts or a vanished holder",
			"lock", p.String(), "settings", strings.Join(off, "; "))
	}
}

// exec runs a statement of a runner that does not hold the lock, bounded.
func (p *pgLocker) exec(ctx context.Context, sql string) error {
	sctx, cancel, err := p.budget.statement(ctx, 0)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := p.conn.PgConn().Exec(sctx, sql).ReadAll(); err != nil {
		return err
	}
	p.budget.answered(time.Now())
	return nil
}

// waitTurn waits up to d: in session mode for the holder's NOTIFY, which
// wakes waiters at once; in transaction mode (no LISTEN through a
// transaction pooler) simply d. Never past the budget.
func (p *pgLocker) waitTurn(ctx context.Context, d time.Duration) error {
	d = min(d, time.Until(p.budget.deadline()))
	if p.opts.Mode != ModeSession {
		return sleep(ctx, d)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err := p.conn.WaitForNotification(wctx)
	if err == nil {
		p.budget.answered(time.Now())
		return nil
	}
	if wctx.Err() != nil && ctx.Err() == nil && !p.conn.IsClosed() {
		return nil // the poll interval passed: try again
	}
	return err
}

// dropBroken closes a connection that failed, so the next round reconnects;
// errors the server answered with are returned instead.
func (p *pgLocker) dropBroken(err error) error {
	if errors.Is(err, ErrUnavailable) {
		p.close()
		return err
	}
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	if isPg && pgErr.Code == queryCanceled && !p.conn.IsClosed() {
		// Cancelled, most likely by the role's statement_timeout before
		// the session's own settings took (a slow moment): not a refusal.
		// A fresh connection sends the settings again; the connection's
		// budget still bounds how long this may go on. Closing also
		// frees a session lock the cancelled statement may have taken.
		p.opts.Logger.Info("a lock statement was cancelled (the role's statement_timeout?); trying again on a new connection", "lock", p.String())
		p.close()
		return nil
	}
	if isPg && !p.conn.IsClosed() {
		p.close()
		return fmt.Errorf("acquire %s: %s (SQLSTATE %s)", p.String(), pgErr.Message, pgErr.Code)
	}
	p.opts.Logger.Warn("lock connection lost while waiting; reconnecting", "lock", p.String(), "err", dbconn.LastLine(err))
	p.close()
	// The server ending an idle session (a role's idle_session_timeout
	// between a transaction-mode waiter's tries) is not a lost server.
	if !isPg || (pgErr.Code != "57P05" && pgErr.Code != "25P03") {
		p.lostConn = true
	}
	return nil
}

// acquired checks that the lock is held by this very backend (through a
// transaction pooler the next statement may run on another one, and a
// session lock would then exclude nobody), starts the keep-alive, and
// holds the lock through the takeover guard when one is due.
func (p *pgLocker) acquired(ctx context.Context, got tryResult, firstAfterLoss bool) error {
	p.held, p.pid = true, got.pid
	// Behind a pooler or proxy (the backend's pid is not the one the
	// connection's startup named: PgBouncer makes up its own), the lock
	// is checked from a second transaction.
	if p.opts.Mode == ModeSession && p.pooled {
		ours, err := p.sameSession(ctx)
		if err != nil {
			p.Unlock(context.WithoutCancel(ctx))
			return fmt.Errorf("%w: verify %s: %s", ErrUnavailable, p.String(), dbconn.LastLine(err))
		}
		if !ours {
			p.Unlock(context.WithoutCancel(ctx))
			return errPooled
		}
	}
	p.warnUnprotected()
	p.ka.start(p, got.sent)
	until, why := takeover(p.timing, got.answ, got.upFor, firstAfterLoss)
	if err := guard(ctx, p.opts, p.String(), p.ka, until, why); err != nil {
		p.Unlock(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// errPooled: the lock and this connection's statements are not bound to
// one server session, the sign of a transaction pooler in between. (A
// type, not fmt.Errorf: package-level values are built at every start,
// whatever the subcommand.)
var errPooled error = pooledError{}

type pooledError struct{}

func (pooledError) Error() string {
	return ErrUnsupported.Error() + ": migrun's statements do not all run in one database session: is a transaction pooler (PgBouncer pool_mode=transaction) in between? Use MIGRUN_LOCK_MODE=transaction"
}

func (pooledError) Unwrap() error { return ErrUnsupported }

// heldHere finds the two-int4 advisory lock held by this server session.
func (p *pgLocker) heldHere() string {
	return fmt.Sprintf(`SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND classid = %d::oid AND objid = %d::oid AND objsubid = 2
		  AND pid = pg_backend_pid() AND granted`, uint32(p.k1), uint32(p.k2))
}

// sameSession reports whether a second transaction runs in the server
// session whose try took the lock.
func (p *pgLocker) sameSession(ctx context.Context) (bool, error) {
	sctx, cancel, err := p.budget.statement(ctx, 0)
	if err != nil {
		return false, err
	}
	defer cancel()
	var pid int32
	if err := p.conn.QueryRow(sctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return false, err
	}
	p.budget.answered(time.Now())
	return pid == p.pid, nil
}

// confirm is the keep-alive's check: does this backend hold the lock?
//
// In transaction mode the lock lasts exactly as long as the transaction,
// so an empty statement answers: the server's ready-for-query status
// says whether the transaction is still open ('T'; through PgBouncer too,
// which keeps the server connection for an open transaction). Any SELECT
// would take a snapshot inside the held transaction, and CREATE INDEX
// CONCURRENTLY waits for the end of every transaction that had one when
// it looked: an index build of the migration would then wait for the
// lock's release, which waits for the migration. An empty statement takes
// none.
func (p *pgLocker) confirm(ctx context.Context) (bool, error) {
	if p.opts.Mode == ModeTransaction {
		if _, err := p.conn.PgConn().Exec(ctx, "").ReadAll(); err != nil {
			return false, err
		}
		return p.conn.PgConn().TxStatus() == 'T', nil
	}
	var ok bool
	err := p.conn.QueryRow(ctx, "SELECT EXISTS ("+p.heldHere()+")").Scan(&ok)
	return ok, err
}

// idle waits between checks inside WaitForNotification, which returns
// at once when the server ends the session (its FATAL, or the socket
// closing); its deadline leaves the connection usable.
func (p *pgLocker) idle(ctx context.Context, until time.Time, _ bool) error {
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	for {
		_, err := p.conn.WaitForNotification(wctx)
		switch {
		case err == nil:
			continue // a notification for a LISTEN of the wait: not ours to act on
		case p.conn.IsClosed():
			return err
		default:
			return nil // time for the next check (or an oddity the check will judge)
		}
	}
}

func (p *pgLocker) gone(error) bool { return p.conn.IsClosed() }

func (p *pgLocker) Unlock(ctx context.Context) error {
	ctx, cancel := releaseContext(ctx)
	defer cancel()
	confirmed := p.ka.halt(ctx)
	if p.conn == nil {
		return nil
	}
	defer p.close()
	if !p.held {
		return nil
	}
	p.held = false
	if !confirmed || p.conn.IsClosed() {
		return fmt.Errorf("release %s: %s; closing the connection frees it", p.String(), unconfirmedWhy(p.ka))
	}
	if p.opts.Mode == ModeTransaction {
		if _, err := p.conn.Exec(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("release %s: %s", p.String(), dbconn.LastLine(err))
		}
		return nil
	}
	// Unlock, and wake the next runners (wakeSQL). A runner that waited
	// itself does both in one message: others most likely wait too, and
	// its backend has read pg_locks before (the holder's description).
	// Otherwise it first sees whether anyone waits: the queue's lock,
	// taken exclusively, is free of waiters. Only then is pg_locks read,
	// which in a new backend costs milliseconds an uncontended run does
	// without.
	sql := fmt.Sprintf("SELECT pg_advisory_unlock(%d, %d);\n", p.k1, p.k2)
	if p.queued {
		sql += p.wakeSQL()
	} else {
		sql += fmt.Sprintf("SELECT CASE WHEN pg_try_advisory_lock(%[1]d, %[2]d) THEN pg_advisory_unlock(%[1]d, %[2]d) END", p.q1, p.q2)
	}
	results, err := p.conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil && (len(results) == 0 || results[0].Err != nil) {
		return fmt.Errorf("release %s: %s", p.String(), dbconn.LastLine(err))
	}
	if len(results) == 0 || len(results[0].Rows) != 1 {
		return fmt.Errorf("release %s: unexpected answer", p.String())
	}
	if string(results[0].Rows[0][0]) != "t" {
		// Closing the connection frees it, unless a pooler keeps the
		// server session that holds it.
		return fmt.Errorf("release %s: this database session did not hold it: %w", p.String(), errPooled)
	}
	switch {
	case err != nil:
		p.wakeFailed(err) // unlocked, but the waking statement failed
	case !p.queued && len(results) == 2 && len(results[1].Rows) == 1 && results[1].Rows[0][0] == nil:
		if _, err := p.conn.Exec(ctx, p.wakeSQL()); err != nil {
			p.wakeFailed(err)
		}
	}
	return nil
}

// wakeSQL wakes the runners that have waited longest (by their
// connection's age: pg_stat_get_activity for the waiters alone costs half
// of what the pg_stat_activity view does), wakeAtRelease of them, rather
// than every waiter: a herd of tries at each release would compete with
// the next command's start for the database's and the runners' CPUs. It
// runs after the unlock; a waiter that joins the queue after it looked
// finds the lock free, since a waiter tries once more after joining.
func (p *pgLocker) wakeSQL() string {
	return fmt.Sprintf(`SELECT pg_notify('%s_' || w.pid, '') FROM (
		SELECT l.pid FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.classid = %d::oid AND l.objid = %d::oid AND l.objsubid = 2
		  AND l.mode = 'ShareLock' AND l.granted AND l.pid <> pg_backend_pid()
		ORDER BY (SELECT backend_start FROM pg_stat_get_activity(l.pid)) NULLS LAST, l.pid
		LIMIT %d) w`, p.channel, uint32(p.q1), uint32(p.q2), wakeAtRelease)
}

// wakeFailed says that the lock was released but nobody woken.
func (p *pgLocker) wakeFailed(err error) {
	p.opts.Logger.Warn("released the lock, but could not wake the next runner; it finds the lock free within "+pollInterval.String(),
		"lock", p.String(), "err", dbconn.LastLine(err))
}

// unconfirmedWhy says why a lock is released by closing.
func unconfirmedWhy(ka *keepAlive) string {
	if err := ka.Err(); err != nil {
		return "the lock was lost (" + err.Error() + ")"
	}
	return "the lock was not confirmed when the keep-alive stopped"
}

func (p *pgLocker) close() {
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.conn.Close(ctx)
		p.conn = nil
	}
}
