package netfault

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Relay is a TCP relay, run in the test process, between clients and one
// target address: a stand-in for the network between them that can stop
// carrying data without closing anything. It needs no privileges.
//
// Stall stops forwarding on every connection, existing and new: the
// sockets stay open, and the relay's kernel still accepts and ACKs what
// the peers send until the socket buffers fill, as a congested or
// stalled path does. BlackHole also stops accepting connections: a
// client's connect completes in the kernel (until the listen backlog is
// full) and then hears nothing. Resume forwards again, what was held back
// included, in order; connections that arrived meanwhile are served then.
// A client's or the target's FIN or RST is held back like data.
type Relay struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	state    relayState
	changed  chan struct{} // closed and replaced at every change of state or closed
	closed   bool
	conns    map[net.Conn]struct{}
	accepted int
}

type relayState int

const (
	forwarding relayState = iota
	stalled
	blackHoled
)

// dialTimeout bounds the relay's connect to the target; a client whose
// target cannot be reached is disconnected.
const dialTimeout = 10 * time.Second

// StartRelay listens on a free loopback port and relays every connection
// to target (host:port).
func StartRelay(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{target: target, ln: ln, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.acceptLoop()
	return r, nil
}

// NewRelay starts a relay to target for a test, closed at its end.
func NewRelay(tb testing.TB, target string) *Relay {
	tb.Helper()
	r, err := StartRelay(target)
	if err != nil {
		tb.Fatalf("netfault: start relay to %s: %v", target, err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// Addr is the relay's host:port, for clients.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Stall stops forwarding, keeping every connection open.
func (r *Relay) Stall() { r.set(stalled) }

// BlackHole stops forwarding and accepting.
func (r *Relay) BlackHole() { r.set(blackHoled) }

// Resume forwards and accepts again.
func (r *Relay) Resume() { r.set(forwarding) }

// Accepted is how many connections the relay has accepted.
func (r *Relay) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

// Close closes the listener and every connection, and waits for the
// relay's goroutines to end.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.changed)
	err := r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) set(s relayState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.state == s {
		return
	}
	r.state = s
	close(r.changed)
	r.changed = make(chan struct{})
}

// await blocks until ok holds for the state; false once the relay closed.
func (r *Relay) await(ok func(relayState) bool) bool {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return false
		}
		if ok(r.state) {
			r.mu.Unlock()
			return true
		}
		changed := r.changed
		r.mu.Unlock()
		<-changed
	}
}

func isForwarding(s relayState) bool { return s == forwarding }
func isAccepting(s relayState) bool  { return s != blackHoled }

// track records c so Close can close it; false (and c closed) once closed.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
	c.Close()
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		// While black-holed, connections wait in the kernel's backlog.
		if !r.await(isAccepting) {
			return
		}
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if !r.track(c) {
			return
		}
		r.mu.Lock()
		r.accepted++
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(c)
	}
}

// serve connects a client to the target, once forwarding, and relays both
// ways until both have finished.
func (r *Relay) serve(client net.Conn) {
	defer r.wg.Done()
	defer r.untrack(client)
	if !r.await(isForwarding) {
		return
	}
	target, err := net.DialTimeout("tcp", r.target, dialTimeout)
	if err != nil {
		return
	}
	if !r.track(target) {
		return
	}
	defer r.untrack(target)
	var both sync.WaitGroup
	both.Add(2)
	go r.pipe(&both, target, client)
	go r.pipe(&both, client, target)
	both.Wait()
}

// pipe copies src to dst. Whatever it read (data, EOF or an error) waits
// for forwarding before it is passed on.
func (r *Relay) pipe(done *sync.WaitGroup, dst, src net.Conn) {
	defer done.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if !r.await(isForwarding) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite() // pass the FIN on; the other way may go on
				return
			}
			dst.Close() // a reset or a local close: end both ways
			return
		}
	}
}
