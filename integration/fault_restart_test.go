package integration

import (
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// TestFaultServerRestart: the server restarts (a fast shutdown, then a
// start at once) while a holder's command runs and two waiters wait, in
// every lock mode. The restart frees every lock. The holder notices at
// once, stops its command and exits 75, saying so. The waiters reconnect
// and, finding the server up for less than D, wait until it has been up
// for D before starting their commands, as a holder that did not notice
// could still be running. No commands overlap.
func TestFaultServerRestart(t *testing.T) {
	t.Parallel()
	kinds := make([]string, len(lockCases))
	for i, c := range lockCases {
		kinds[i] = c.kind
	}
	srvs := startServers(t, kinds, testdb.Options{})
	byCase := map[lockCase]*testdb.Server{}
	for i, c := range lockCases {
		byCase[c] = srvs[i]
	}

	concurrently(t, lockCases, func(t *testing.T, c lockCase) {
		srv := byCase[c]
		f := shortFaults
		d := f.deadHolder()
		_, url := srv.CreateDatabase(t)
		// A MariaDB restart has taken 16 s on a loaded machine: the connect
		// timeout must outlast it, or the waiters give up (69) instead.
		env := merge(c.env(), f.env(), map[string]string{"DATABASE_URL": url, "MIGRUN_CONNECT_TIMEOUT": "90s"})

		holder := newMarked(t, "holder")
		h := invocation{env: env, args: holder.holderArgs()}.startFault(t, nil)
		holder.waitStarted(t)
		waiters := []marked{newMarked(t, "waiter 1"), newMarked(t, "waiter 2")}
		var ws []*running
		for _, w := range waiters {
			r := invocation{env: env, args: w.waiterArgs("0.2")}.startFault(t, nil)
			waitForWaiting(t, w.name, r)
			ws = append(ws, r)
		}

		stoppingAt := time.Now()
		srv.Stop(t)
		startingAt := time.Now() // the server cannot have been up before this
		srv.Start(t)
		t.Logf("restart: stopped in %s, started in %s", since(stoppingAt, startingAt), since(startingAt, time.Now()))

		hres := h.waitBounded(t, "holder", stoppingAt.Add(f.stopTimeout()+timeoutLong))
		assertFenced(t, "holder", hres)
		spans := []span{holder.span(t)}
		deadline := startingAt.Add(d + 3*timeoutLong)
		for i, r := range ws {
			res := r.waitBounded(t, waiters[i].name, deadline)
			s := waiters[i].span(t)
			spans = append(spans, s)
			if res.status != 0 || !s.ran() {
				t.Errorf("%s exited %d, its command ran: %v; want 0 and run:\n%s", waiters[i].name, res.status, s.ran(), res.stderr)
				continue
			}
			// The takeover guard (README: D − 2 s, the server's silence
			// bound): a holder the restart cut off has stopped by then.
			guard := d - 2*time.Second
			if up := s.first.Sub(startingAt); up < guard {
				t.Errorf("%s's command started %s after the server came back up; want it to wait the takeover guard, %s (D=%s)",
					waiters[i].name, up.Round(time.Millisecond), guard, d)
			}
		}
		t.Logf("holder's last mark %s after the stop began; %s", since(stoppingAt, spans[0].last), describeSpans(spans))
		assertSequential(t, spans...)
	})
}
