package integration

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/netfault"
	"github.com/migrun/migrun/internal/testdb"
)

type cutRow struct {
	lock   lockCase
	faults faults
}

func (r cutRow) String() string { return r.lock.String() + "/" + r.faults.String() }

// TestFaultHolderCut: the lock holder runs on a node of its own; then every
// packet between it and the database is silently dropped, as when a node is
// lost. A waiter on the host must get the lock within the bound (its
// command starts less than 2×D after the cut: 60 s with the defaults), and
// the holder, unable to confirm its lock, must have stopped its command
// before the server could free the lock, so before the waiter's command
// started; it exits 75 and says so.
func TestFaultHolderCut(t *testing.T) {
	t.Parallel()
	var rows []cutRow
	for _, c := range lockCases {
		rows = append(rows, cutRow{c, shortFaults})
	}
	rows = append(rows, cutRow{lockCases[0], faults{}}, cutRow{lockCases[2], faults{}})

	nodes := map[string]*netfault.Node{}
	var listen []string
	for _, row := range rows {
		n := netfault.NewNode(t)
		nodes[row.String()] = n
		listen = append(listen, n.HostAddr().String())
	}
	srvs := startServers(t, []string{testdb.KindPostgreSQL, testdb.KindMariaDB}, testdb.Options{Listen: listen})
	server := map[string]*testdb.Server{testdb.KindPostgreSQL: srvs[0], testdb.KindMariaDB: srvs[1]}

	concurrently(t, rows, func(t *testing.T, row cutRow) {
		holderCut(t, server[row.lock.kind], nodes[row.String()], row)
	})
}

func holderCut(t *testing.T, srv *testdb.Server, node *netfault.Node, row cutRow) {
	d, g := row.faults.deadHolder(), row.faults.stopTimeout()
	bound := 2 * d
	db, localURL := srv.CreateDatabase(t)
	env := merge(row.lock.env(), row.faults.env())

	holder := newMarked(t, "holder")
	viaNode := srv.URLAt(net.JoinHostPort(node.HostAddr().String(), strconv.Itoa(srv.Port())), db)
	h := invocation{env: merge(env, map[string]string{"DATABASE_URL": viaNode}), args: holder.holderArgs()}.startFault(t, node)
	holder.waitStarted(t)

	waiter := newMarked(t, "waiter")
	// Its lock timeout ends it by itself, after the bound, when the lock never comes.
	wenv := merge(env, map[string]string{"DATABASE_URL": localURL, "MIGRUN_LOCK_TIMEOUT": (bound + 10*time.Second).String()})
	w := invocation{env: wenv, args: waiter.waiterArgs("0.2")}.startFault(t, nil)
	waitForWaiting(t, "waiter", w)

	if err := node.Cut(); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()

	wres := w.waitBounded(t, "waiter", cutAt.Add(bound+30*time.Second))
	ws := waiter.span(t)
	if wres.status != 0 || !ws.ran() {
		t.Errorf("waiter exited %d, its command ran: %v; want 0 and run:\n%s", wres.status, ws.ran(), wres.stderr)
	} else if late := ws.first.Sub(cutAt); late > bound {
		t.Errorf("the waiter's command started %s after the cut; want under %s (2×D)", late.Round(time.Millisecond), bound)
	}
	hres := h.waitBounded(t, "holder", cutAt.Add(d+g+20*time.Second))
	hs := holder.span(t)
	t.Logf("after the cut: holder's last mark %s, waiter's start %s", since(cutAt, hs.last), since(cutAt, ws.first))
	assertFenced(t, "holder", hres)
	// The server frees the lock at the earliest D after the last packet it
	// got; the holder's command must be gone by then.
	if !hs.last.Before(cutAt.Add(d)) {
		t.Errorf("the holder's command still ran %s after the cut (D=%s)", since(cutAt, hs.last), d)
	}
	assertSequential(t, hs, ws)
}
