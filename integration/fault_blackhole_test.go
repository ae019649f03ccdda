package integration

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/netfault"
	"github.com/migrun/migrun/internal/testdb"
)

// Black hole bounds: the waiter's connect timeout, and what it may take
// beyond it (a poll interval in progress, process start and exit).
const (
	blackHoleConnectTimeout = 5 * time.Second
	blackHoleMargin         = 3 * time.Second
)

type blackHoleRow struct {
	lock lockCase
	how  string // "relay": the relay in front of the server black-holes; "cut": the waiter's node is cut off
}

func (r blackHoleRow) String() string { return r.lock.String() + "/" + r.how }

// TestFaultBlackHole: while one runner holds the lock and another waits,
// the database vanishes for the waiter without a word: a relay in front of
// it stops answering and accepting, or the waiter's node is cut off. In
// every lock mode the waiter gives up with exit 69 within
// MIGRUN_CONNECT_TIMEOUT (5s) and a small margin, and never runs its
// command; the holder is not disturbed.
func TestFaultBlackHole(t *testing.T) {
	t.Parallel()
	var rows []blackHoleRow
	for _, how := range []string{"relay", "cut"} {
		for _, c := range lockCases {
			rows = append(rows, blackHoleRow{c, how})
		}
	}
	nodes := map[blackHoleRow]*netfault.Node{}
	var listen []string
	for _, row := range rows {
		if row.how == "cut" {
			n := netfault.NewNode(t)
			nodes[row] = n
			listen = append(listen, n.HostAddr().String())
		}
	}
	srvs := startServers(t, []string{testdb.KindPostgreSQL, testdb.KindMariaDB}, testdb.Options{Listen: listen})
	server := map[string]*testdb.Server{testdb.KindPostgreSQL: srvs[0], testdb.KindMariaDB: srvs[1]}

	concurrently(t, rows, func(t *testing.T, row blackHoleRow) {
		srv := server[row.lock.kind]
		db, url := srv.CreateDatabase(t)
		env := row.lock.env()
		holder := newMarked(t, "holder")
		h := invocation{env: merge(env, map[string]string{"DATABASE_URL": url}), args: holder.holderArgs()}.startFault(t, nil)
		holder.waitStarted(t)

		wenv := merge(env, map[string]string{"MIGRUN_CONNECT_TIMEOUT": blackHoleConnectTimeout.String()})
		var fault func() error
		var node *netfault.Node
		if row.how == "relay" {
			relay := netfault.NewRelay(t, srv.Addr())
			wenv["DATABASE_URL"] = srv.URLAt(relay.Addr(), db)
			fault = func() error { relay.BlackHole(); return nil }
		} else {
			node = nodes[row]
			wenv["DATABASE_URL"] = srv.URLAt(net.JoinHostPort(node.HostAddr().String(), strconv.Itoa(srv.Port())), db)
			fault = node.Cut
		}
		waiter := newMarked(t, "waiter")
		w := invocation{env: wenv, args: waiter.waiterArgs("0.2")}.startFault(t, node)
		waitForWaiting(t, "waiter", w)

		if err := fault(); err != nil {
			t.Fatal(err)
		}
		faultAt := time.Now()
		wres := w.waitBounded(t, "waiter", faultAt.Add(blackHoleConnectTimeout+timeoutLong))
		took := time.Since(faultAt)
		if wres.status != 69 {
			t.Errorf("waiter exited %d after %s, want 69:\n%s", wres.status, took.Round(time.Millisecond), wres.stderr)
		} else if took > blackHoleConnectTimeout+blackHoleMargin {
			t.Errorf("waiter exited 69 after %s; want within %s (MIGRUN_CONNECT_TIMEOUT) + %s:\n%s",
				took.Round(time.Millisecond), blackHoleConnectTimeout, blackHoleMargin, wres.stderr)
		} else {
			t.Logf("waiter exited 69 %s after the black hole", took.Round(time.Millisecond))
		}
		if waiter.span(t).ran() {
			t.Error("the waiter ran its command without the lock")
		}

		holder.finish(t)
		assertClean(t, "holder", h.waitBounded(t, "holder", time.Now().Add(timeoutLong)))
	})
}
