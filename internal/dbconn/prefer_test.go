package dbconn

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// server is what the proxy in front of a PostgreSQL server without TLS
// plays for one client connection.
type server int

const (
	noTLS       server = iota // the real server: answers SSLRequest with 'N'
	tlsOffered                // says 'S' and speaks TLS, the real server behind
	tlsBroken                 // says 'S', then closes the connection
	tlsRefusing               // speaks TLS, then refuses the session (pg_hba's hostnossl)
	silent                    // never answers
	noTLSBusy                 // answers 'N', then refuses the session (57P03, starting up)
)

// TestConnectPostgresPrefer: with sslmode=prefer, a server without TLS
// costs one connection (pgx alone makes two); everything else is as pgx
// makes it: TLS where the server offers it, cancel requests over TLS then,
// a plain-text connection after a failed TLS attempt, one startup for a
// server that refuses the session, the other modes; and a server that
// never answers the SSLRequest does not hold the connect past its context.
func TestConnectPostgresPrefer(t *testing.T) {
	pg := testdb.Postgres(t)
	tests := []struct {
		name      string
		sslmode   string
		plays     []server // per connection, in order; the last one repeats
		cancel    bool     // send a cancel request once connected
		wantConns int32
		wantTLS   bool
		wantSSLRq int32 // SSLRequests the proxy saw
		wantStart int32 // startup messages noTLSBusy saw
		wantErr   string
	}{
		{name: "prefer, no TLS", sslmode: "prefer", plays: []server{noTLS}, wantConns: 1, wantSSLRq: 1},
		{name: "default is prefer", plays: []server{noTLS}, wantConns: 1, wantSSLRq: 1},
		{name: "prefer, no TLS, cancel", sslmode: "prefer", plays: []server{noTLS}, cancel: true, wantConns: 2, wantSSLRq: 1},
		{name: "prefer, TLS", sslmode: "prefer", plays: []server{tlsOffered}, wantConns: 1, wantTLS: true, wantSSLRq: 1},
		{name: "prefer, TLS, cancel over TLS", sslmode: "prefer", plays: []server{tlsOffered}, cancel: true, wantConns: 2, wantTLS: true, wantSSLRq: 2},
		{name: "prefer, TLS handshake fails", sslmode: "prefer", plays: []server{tlsBroken, noTLS}, wantConns: 2, wantSSLRq: 1},
		{name: "prefer, session refused over TLS", sslmode: "prefer", plays: []server{tlsRefusing, noTLS}, wantConns: 2, wantSSLRq: 1},
		{name: "prefer, no TLS, session refused", sslmode: "prefer", plays: []server{noTLSBusy}, wantConns: 1, wantSSLRq: 1, wantStart: 1, wantErr: "57P03"},
		{name: "disable", sslmode: "disable", plays: []server{noTLS}, wantConns: 1},
		{name: "allow", sslmode: "allow", plays: []server{noTLS}, wantConns: 1},
		{name: "require, TLS", sslmode: "require", plays: []server{tlsOffered}, wantConns: 1, wantTLS: true, wantSSLRq: 1},
		{name: "require, no TLS", sslmode: "require", plays: []server{noTLS}, wantConns: 1, wantSSLRq: 1, wantErr: "server refused TLS"},
		{name: "prefer, silent server", sslmode: "prefer", plays: []server{silent}, wantConns: 1, wantSSLRq: 1, wantErr: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, pg.Addr(), tt.plays)
			raw := pg.URLAt(p.addr(), testdb.AppUser)
			if tt.sslmode != "" {
				raw += "?sslmode=" + tt.sslmode
			}
			cfg := pgConfigOf(t, raw)
			before := cfg.Copy()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			start := time.Now()
			conn, err := ConnectPostgres(ctx, cfg)
			cancel() // the connection must not depend on the connect's context
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("connect took %s with a 2s context", took)
			}
			if (cfg.TLSConfig == nil) != (before.TLSConfig == nil) || len(cfg.Fallbacks) != len(before.Fallbacks) {
				t.Errorf("the caller's configuration changed")
			}
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one saying %q", err, tt.wantErr)
				}
				if tt.plays[0] == silent && !pgconn.Timeout(err) {
					t.Errorf("err = %v, want a timeout", err)
				}
			case err != nil:
				t.Fatalf("connect: %v", err)
			default:
				defer conn.Close(context.Background())
				var one int
				if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
					t.Fatalf("query: %v", err)
				}
				if _, isTLS := conn.PgConn().Conn().(*tls.Conn); isTLS != tt.wantTLS {
					t.Errorf("TLS %v, want %v", isTLS, tt.wantTLS)
				}
				if tt.cancel {
					if err := conn.PgConn().CancelRequest(context.Background()); err != nil {
						t.Fatalf("cancel request: %v", err)
					}
					p.waitConns(t, tt.wantConns)
				}
			}
			if got := p.conns.Load(); got != tt.wantConns {
				t.Errorf("%d connections to the server, want %d", got, tt.wantConns)
			}
			if got := p.sslRequests.Load(); got != tt.wantSSLRq {
				t.Errorf("%d SSLRequests, want %d", got, tt.wantSSLRq)
			}
			if got := p.startups.Load(); got != tt.wantStart {
				t.Errorf("%d startup messages to the refusing server, want %d", got, tt.wantStart)
			}
		})
	}
}

// TestIsPrefer: only one host's sslmode=prefer is changed; the other modes,
// several hosts and unix sockets are pgx's own.
func TestIsPrefer(t *testing.T) {
	for raw, want := range map[string]bool{
		"postgres://u@h/db":                true,
		"postgres://u@h/db?sslmode=prefer": true,
		"postgres://u@h/db?sslmode=prefer&target_session_attrs=read-write": true,
		"postgres://u@h/db?sslmode=disable":                                false,
		"postgres://u@h/db?sslmode=allow":                                  false,
		"postgres://u@h/db?sslmode=require":                                false,
		"postgres://u@h/db?sslmode=verify-full":                            false,
		"postgres://u@/db?sslmode=prefer&host=h1,h2":                       false,
		"postgres://u@/db?sslmode=prefer&host=/var/run/postgresql":         false,
	} {
		if got := isPrefer(&pgConfigOf(t, raw).Config); got != want {
			t.Errorf("%s: isPrefer %v, want %v", raw, got, want)
		}
	}
}

// pgConfigOf is PostgresConfig for a URL.
func pgConfigOf(t *testing.T, raw string) *pgx.ConnConfig {
	t.Helper()
	u, err := dburl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := PostgresConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// proxy plays one of the servers above for each connection, in front of
// a real server at backend.
type proxy struct {
	ln          net.Listener
	backend     string
	plays       []server
	cert        tls.Certificate
	conns       atomic.Int32
	sslRequests atomic.Int32
	startups    atomic.Int32 // seen by noTLSBusy
	wg          sync.WaitGroup
}

func startProxy(t *testing.T, backend string, plays []server) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, backend: backend, plays: plays, cert: selfSigned(t)}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// waitConns waits, bounded, until n connections came (a cancel request's
// connection may arrive after CancelRequest returned).
func (p *proxy) waitConns(t *testing.T, n int32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); p.conns.Load() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proxy) serve() {
	defer p.wg.Done()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := int(p.conns.Add(1))
		play := p.plays[min(n, len(p.plays))-1]
		open = append(open, c)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c, play)
		}()
	}
}

func (p *proxy) handle(c net.Conn, play server) {
	defer c.Close()
	first := make([]byte, 8)
	if _, err := io.ReadFull(c, first); err != nil {
		return
	}
	isSSLRequest := bytes.Equal(first, sslRequest)
	if isSSLRequest {
		p.sslRequests.Add(1)
	}
	var client net.Conn = c
	switch {
	case play == silent:
		io.Copy(io.Discard, c) // until the client gives up
		return
	case play == noTLSBusy:
		// first is the SSLRequest, or the start of a startup message.
		if isSSLRequest {
			c.Write([]byte{'N'})
			if !readMessage(c) {
				return
			}
		}
		p.startups.Add(1)
		c.Write(errorResponse("57P03", "the database system is starting up"))
		return
	case play == noTLS || !isSSLRequest:
		// The real server answers, from the first message on.
		pipe(c, p.backend, first)
		return
	case play == tlsBroken:
		c.Write([]byte{'S'})
		return
	}
	c.Write([]byte{'S'})
	tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{p.cert}})
	if err := tc.Handshake(); err != nil {
		return
	}
	client = tc
	if play == tlsRefusing {
		readMessage(client) // the startup message
		client.Write(errorResponse("28000", "no pg_hba.conf entry for this user with SSL on"))
		return
	}
	pipe(client, p.backend, nil)
}

// pipe connects client to a new connection to backend, sending first
// ahead of the client's bytes.
func pipe(client net.Conn, backend string, first []byte) {
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	if _, err := b.Write(first); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, client); done <- struct{}{} }()
	go func() { io.Copy(client, b); done <- struct{}{} }()
	<-done
}

// readMessage reads a length-prefixed startup message, reporting whether
// it came.
func readMessage(c net.Conn) bool {
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return false
	}
	_, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(n[:]))-4)
	return err == nil
}

// errorResponse is a FATAL ErrorResponse message.
func errorResponse(code, msg string) []byte {
	body := "SFATAL\x00VFATAL\x00C" + code + "\x00M" + msg + "\x00\x00"
	out := []byte{'E', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(4+len(body)))
	return append(out, body...)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
