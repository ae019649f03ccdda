package lock

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// relay is a TCP proxy between a test's runners and a database server
// that can stall: paused, it forwards nothing either way and connects
// new clients to nothing, while the kernel still accepts connections and
// acknowledges what is sent. To the runner that is a network (or server)
// that stopped answering; to the server, a client gone quiet whose socket
// still answers TCP keep-alives.
type relay struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu     sync.Mutex
	open   chan struct{} // closed while forwarding; replaced by pause
	conns  []net.Conn
	closed bool
}

// newRelay relays to target (host:port) until the test ends.
func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, target: target, open: make(chan struct{})}
	close(r.open)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// via rewrites a test server URL to go through the relay.
func (r *relay) via(t *testing.T, raw string, port int) string {
	t.Helper()
	hostPort := "127.0.0.1:" + strconv.Itoa(port)
	if !strings.Contains(raw, hostPort) {
		t.Fatalf("URL does not name %s", hostPort)
	}
	return strings.Replace(raw, hostPort, r.ln.Addr().String(), 1)
}

// pause stops forwarding.
func (r *relay) pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
		r.open = make(chan struct{})
	default:
	}
}

// resume forwards again, what was held back first.
func (r *relay) resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
	default:
		close(r.open)
	}
}

// gate waits while the relay is paused; false once it is closed.
func (r *relay) gate() bool {
	r.mu.Lock()
	open, closed := r.open, r.closed
	r.mu.Unlock()
	if closed {
		return false
	}
	<-open
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns = append(r.conns, c)
	return true
}

func (r *relay) accept() {
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(client) {
			return
		}
		go func() {
			if !r.gate() { // a paused relay connects a new client to nothing
				return
			}
			server, err := net.Dial("tcp", r.target)
			if err != nil {
				client.Close()
				return
			}
			if !r.track(server) {
				client.Close()
				return
			}
			go r.pipe(server, client)
			r.pipe(client, server)
		}()
	}
}

// pipe copies src to dst, holding each read back while paused.
func (r *relay) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !r.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	conns := r.conns
	r.conns = nil
	select {
	case <-r.open:
	default:
		close(r.open)
	}
	r.mu.Unlock()
	r.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}
