package dbconn

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDeadPeerWithin(t *testing.T) {
	tests := []struct {
		bound time.Duration
		want  DeadPeer
	}{
		{28 * time.Second, DeadPeer{Idle: 14 * time.Second, Interval: time.Second, Count: 14, UserTimeout: 28 * time.Second}},
		{5 * time.Second, DeadPeer{Idle: 2 * time.Second, Interval: time.Second, Count: 3, UserTimeout: 5 * time.Second}},
		{time.Second, DeadPeer{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: 2 * time.Second}},
	}
	for _, tt := range tests {
		got := DeadPeerWithin(tt.bound)
		if got != tt.want {
			t.Errorf("DeadPeerWithin(%v) = %+v, want %+v", tt.bound, got, tt.want)
		}
		// Without TCP_USER_TIMEOUT the probes end at the bound too.
		if end := got.Idle + time.Duration(got.Count)*got.Interval; end != got.UserTimeout {
			t.Errorf("DeadPeerWithin(%v): probes end at %v, not at the user timeout %v", tt.bound, end, got.UserTimeout)
		}
	}
}

// TestDial: the socket carries the settings (read back from the kernel).
func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dp := DeadPeerWithin(28 * time.Second)
	c, err := dp.Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	opts := []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 14},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 14},
		{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 28000},
	}
	if err := rc.Control(func(fd uintptr) {
		for _, o := range opts {
			v, err := unix.GetsockoptInt(int(fd), o.level, o.opt)
			if err != nil {
				t.Errorf("%s: %v", o.name, err)
			}
			got[o.name] = v
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		if got[o.name] != o.want {
			t.Errorf("%s = %d, want %d", o.name, got[o.name], o.want)
		}
	}
}
