package dbconn

import (
	"bytes"
	"context"
	"net"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ConnectPostgres connects as pgx.ConnectConfig does, except that with
// sslmode=prefer (libpq's default, and so Rails') a server without TLS
// costs one connection, not two. pgx's prefer is each address twice: first
// with TLS, then in plain text. It sends SSLRequest and, when the server
// answers that it has no TLS, closes that connection and opens another for
// the plain-text attempt: a second TCP handshake and a second backend
// forked by the server, for every connection to a server without TLS (most
// in-cluster servers, PgBouncer, a cloud SQL proxy on localhost). libpq
// goes on in plain text on the first. Here the refused connection is kept
// instead of closed, and the plain-text attempt to that address is given
// it (offerConn). Everything else is pgx's own: TLS when the server offers
// it (and cancel requests over TLS then), the plain-text attempt after a
// failed TLS one, the order of addresses and the errors.
func ConnectPostgres(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	if !isPrefer(&cfg.Config) {
		return pgx.ConnectConfig(ctx, cfg)
	}
	c := cfg.Copy()
	k := &keptConns{dial: c.DialFunc}
	c.DialFunc = k.dialFunc
	defer k.end()
	return pgx.ConnectConfig(ctx, c)
}

// isPrefer reports whether cfg is pgx's sslmode=prefer for one host: first
// with TLS, then again without. (Several hosts are left to pgx: nothing is
// kept between addresses anyway.)
func isPrefer(cfg *pgconn.Config) bool {
	if cfg.TLSConfig == nil || len(cfg.Fallbacks) != 1 {
		return false
	}
	plain := cfg.Fallbacks[0]
	return plain.TLSConfig == nil && plain.Host == cfg.Host && plain.Port == cfg.Port
}

// keptConns are one connect's connections that the server answered 'N'
// to, kept for the next attempt to the same address.
type keptConns struct {
	dial  pgconn.DialFunc
	mu    sync.Mutex
	ended bool // the connect returned: dial as pgx does, keep nothing
	kept  map[string]*offerConn
}

func (k *keptConns) dialFunc(ctx context.Context, network, addr string) (net.Conn, error) {
	key := network + " " + addr
	k.mu.Lock()
	if c, ok := k.kept[key]; ok && !k.ended {
		delete(k.kept, key)
		k.mu.Unlock()
		return c, nil
	}
	ended := k.ended
	k.mu.Unlock()
	conn, err := k.dial(ctx, network, addr)
	if err != nil || ended {
		return conn, err // a cancel request after the connect, say
	}
	return &offerConn{Conn: conn, keep: func(c *offerConn) bool { return k.keep(key, c) }}, nil
}

// keep holds c for the next attempt to its address, unless the connect
// has returned.
func (k *keptConns) keep(key string, c *offerConn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ended {
		return false
	}
	if k.kept == nil {
		k.kept = map[string]*offerConn{}
	}
	if old, ok := k.kept[key]; ok && old != c {
		old.Conn.Close()
	}
	k.kept[key] = c
	return true
}

// end closes what no attempt took (the connect ended before its plain-text
// attempt: an error, a cancelled context).
func (k *keptConns) end() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ended = true
	for _, c := range k.kept {
		c.Conn.Close()
	}
	k.kept = nil
}

// sslRequest is the protocol's SSLRequest message: its length, 8, and the
// code 80877103 (1234 in the high 16 bits, 5679 in the low).
var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// offerConn is a connection of a connect in progress. It notes the
// server's 'N' to an SSLRequest; closed after that, before anything else
// was written, it is kept (keep) rather than closed, and the attempt given
// it next sends its startup message on it. An SSLRequest written again
// after the 'N' (the same address twice with TLS) is answered 'N' here:
// the server, which already answered, expects the startup message.
type offerConn struct {
	net.Conn
	keep func(*offerConn) bool

	asked   bool // an SSLRequest went out; its answer is the next byte read
	refused bool // the server answered 'N'
	fakeN   bool // an SSLRequest after the 'N' was held back: answer 'N'
	used    bool // anything but negotiation was written
}

func (c *offerConn) Write(p []byte) (int, error) {
	if !c.used && bytes.Equal(p, sslRequest) {
		if c.refused {
			c.fakeN = true
			return len(p), nil
		}
		c.asked = true
		return c.Conn.Write(p)
	}
	if !c.used {
		c.used = true
	}
	return c.Conn.Write(p)
}

func (c *offerConn) Read(p []byte) (int, error) {
	if c.fakeN && len(p) > 0 {
		c.fakeN = false
		p[0] = 'N'
		return 1, nil
	}
	n, err := c.Conn.Read(p)
	if c.asked && n > 0 {
		c.asked = false
		c.refused = p[0] == 'N'
	}
	return n, err
}

func (c *offerConn) Close() error {
	if c.refused && !c.used && c.keep(c) {
		return nil
	}
	return c.Conn.Close()
}
