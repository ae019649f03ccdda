package integration

import (
	"testing"
	"time"

	"github.com/migrun/migrun/internal/netfault"
)

// stallFor is how long the holder's connection stalls: longer than several
// keep-alive intervals (K=1s), shorter than the fence time with the default
// D and G (about 30s − 2s − 10s − 1s = 17s).
const stallFor = 8 * time.Second

// TestFaultSlowCheck: a relay between the holder and the server stops
// forwarding for 8 s (the relay's kernel still ACKs, so the server sees
// nothing wrong) and then carries on. A slow check is not a lost lock: the
// holder keeps its lock and its command, the waiters wait, nobody overlaps,
// every run exits 0.
func TestFaultSlowCheck(t *testing.T) {
	t.Parallel()
	concurrently(t, lockCases, func(t *testing.T, c lockCase) {
		srv := sharedServer(t, c.kind)
		db, url := srv.CreateDatabase(t)
		relay := netfault.NewRelay(t, srv.Addr())
		env := merge(c.env(), faults{keepAlive: time.Second}.env())

		holder := newMarked(t, "holder")
		h := invocation{env: merge(env, map[string]string{"DATABASE_URL": srv.URLAt(relay.Addr(), db)}), args: holder.holderArgs()}.startFault(t, nil)
		holder.waitStarted(t)
		waiters := []marked{newMarked(t, "waiter 1"), newMarked(t, "waiter 2")}
		var ws []*running
		for _, w := range waiters {
			r := invocation{env: merge(env, map[string]string{"DATABASE_URL": url}), args: w.waiterArgs("0.2")}.startFault(t, nil)
			waitForWaiting(t, w.name, r)
			ws = append(ws, r)
		}

		relay.Stall()
		stalledAt := time.Now()
		time.Sleep(stallFor) // the fault's duration
		relay.Resume()
		resumedAt := time.Now()
		// A few checks after the stall, then the holder finishes.
		time.Sleep(3 * time.Second)
		holder.finish(t)

		deadline := time.Now().Add(timeoutLong)
		hres := h.waitBounded(t, "holder", deadline)
		assertClean(t, "holder", hres)
		spans := []span{holder.span(t)}
		for i, r := range ws {
			assertClean(t, waiters[i].name, r.waitBounded(t, waiters[i].name, deadline))
			spans = append(spans, waiters[i].span(t))
		}
		if hs := spans[0]; !hs.ended || !hs.first.Before(stalledAt) || !hs.last.After(resumedAt) {
			t.Errorf("the holder's command did not run through the stall: %s", describeSpans(spans))
		}
		assertSequential(t, spans...)
	})
}
