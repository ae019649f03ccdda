package netfault

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dialRelay(t *testing.T, r *Relay) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// silent checks that c receives nothing for a while, without an error.
func silent(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s: read %d bytes, %v; want silence", what, n, err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

func TestRelayForwards(t *testing.T) {
	t.Parallel()
	r := NewRelay(t, echoServer(t))
	c := dialRelay(t, r)
	roundTrip(t, c, c, "hello")
	// A half-close is passed on: the echo server ends, and so does the reply.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after a half-close: %d, %v; want EOF", n, err)
	}
	if got := r.Accepted(); got != 1 {
		t.Errorf("Accepted = %d, want 1", got)
	}
}

// TestRelayStall: nothing is forwarded, both ways, on old and new
// connections; the client's data is ACKed all the same; nothing is
// closed; Resume delivers everything.
func TestRelayStall(t *testing.T) {
	t.Parallel()
	r := NewRelay(t, echoServer(t))
	old := dialRelay(t, r)
	roundTrip(t, old, old, "before")

	r.Stall()
	if _, err := old.Write([]byte("during")); err != nil {
		t.Fatalf("write during the stall: %v", err)
	}
	silent(t, old, "stalled connection")
	// The relay's kernel took the data: the sender waits for nothing.
	waitUntil(t, "the stalled data to be ACKed", 5*time.Second, func() bool { return tcpInfo(t, old).Unacked == 0 })
	fresh := dialRelay(t, r) // connects: the relay still accepts
	if _, err := fresh.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	silent(t, fresh, "connection made during the stall")
	if got := r.Accepted(); got != 2 {
		t.Errorf("Accepted = %d, want 2", got)
	}

	r.Resume()
	expect(t, old, "during", 5*time.Second)
	expect(t, fresh, "new", 5*time.Second)
	roundTrip(t, old, old, "after")
}

// TestRelayBlackHole: nothing forwarded and nothing accepted; a client's
// connect completes in the kernel and then hears nothing; Resume serves it.
func TestRelayBlackHole(t *testing.T) {
	t.Parallel()
	r := NewRelay(t, echoServer(t))
	old := dialRelay(t, r)
	roundTrip(t, old, old, "before")

	r.BlackHole()
	if _, err := old.Write([]byte("during")); err != nil {
		t.Fatal(err)
	}
	silent(t, old, "black-holed connection")
	late := dialRelay(t, r)
	if _, err := late.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	silent(t, late, "connection made into the black hole")
	// At most the Accept already waiting when BlackHole came takes it.
	if got := r.Accepted(); got > 2 {
		t.Errorf("Accepted = %d during the black hole", got)
	}

	r.Resume()
	expect(t, old, "during", 5*time.Second)
	expect(t, late, "late", 5*time.Second)
	waitUntil(t, "the late connection to be accepted", 5*time.Second, func() bool { return r.Accepted() == 2 })
}

// TestRelayClose: Close ends stalled connections and returns.
func TestRelayClose(t *testing.T) {
	t.Parallel()
	r, err := StartRelay(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dialRelay(t, r)
	roundTrip(t, c, c, "x")
	r.Stall()
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a stalled connection")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after Close the client reads %v, want EOF or a reset", err)
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Error("the relay still accepts after Close")
	}
}
