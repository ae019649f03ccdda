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
		{300 * time.Second, DeadPeer{Idle: 173 * time.Second, Interval: time.Second, Count: 127, UserTimeout: 300 * time.Second}},
		{MaxDeadPeerBound, DeadPeer{Idle: 32767 * time.Second, Interval: time.Second, Count: 127, UserTimeout: MaxDeadPeerBound}},
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

// TestDial: the socket carries the settings (read back from the kernel),
// for the longest bound too.
func TestDial(t *testing.T) {
	for _, bound := range []time.Duration{28 * time.Second, MaxDeadPeerBound} {
		dp := DeadPeerWithin(bound)
		got := socketOptions(t, dp)
		want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": int(dp.Idle / time.Second), "TCP_KEEPINTVL": 1,
			"TCP_KEEPCNT": dp.Count, "TCP_USER_TIMEOUT": int(dp.UserTimeout / time.Millisecond)}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("bound %v: %s = %d, want %d", bound, name, got[name], w)
			}
		}
	}
}

// socketOptions dials with dp and reads the socket's options back.
func socketOptions(t *testing.T, dp DeadPeer) map[string]int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dp.Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string][2]int{
		"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
	}
	got := map[string]int{}
	if err := rc.Control(func(fd uintptr) {
		for name, o := range opts {
			v, err := unix.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			got[name] = v
		}
	}); err != nil {
		t.Fatal(err)
	}
	return got
}
