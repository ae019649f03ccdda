package dbconn

import (
	"context"
	"net"
	"strings"
	"syscall"
	"time"
)

// DeadPeer is how a TCP connection notices a peer that vanished without
// closing it (its node gone, its packets dropped): TCP keep-alive probes,
// and TCP_USER_TIMEOUT on data left unacknowledged. The kernel's defaults
// take over two hours; these take Bound.
//
// On Linux (checked on 6.x, and as tcp_keepalive_timer reads since 2.6.37):
// with TCP_USER_TIMEOUT set, an idle connection is dropped at the first
// keep-alive probe at which the peer has been silent for at least
// UserTimeout, and the probe count is ignored; data sent and left
// unacknowledged drops it UserTimeout after it was first sent. Probes go
// out every Interval from Idle on, so an idle connection is dropped
// between Bound and Bound + Interval after the peer's last packet, and
// never sooner than Bound after it. Without TCP_USER_TIMEOUT (an older or
// another kernel) Count probes end at Idle + Count×Interval = Bound too.
type DeadPeer struct {
	Idle        time.Duration // silence before the first probe
	Interval    time.Duration // between probes
	Count       int           // unanswered probes that end the connection without TCP_USER_TIMEOUT
	UserTimeout time.Duration // TCP_USER_TIMEOUT
}

// Linux's limits on the keep-alive settings (MAX_TCP_KEEPIDLE,
// MAX_TCP_KEEPCNT): a socket refuses more.
const (
	maxKeepIdle  = 32767
	maxKeepCount = 127
)

// MaxDeadPeerBound is the longest bound DeadPeerWithin can keep: the
// longest silence before the first probe, and the most probes a second.
const MaxDeadPeerBound = (maxKeepIdle + maxKeepCount) * time.Second

// DeadPeerWithin splits bound (whole seconds, at least 2 s, at most
// MaxDeadPeerBound) into DeadPeer settings: probes one a second from
// half the bound on, or from 127 s before it when the bound is longer
// (a socket takes no more probes than that).
func DeadPeerWithin(bound time.Duration) DeadPeer {
	secs := min(max(int(bound/time.Second), 2), int(MaxDeadPeerBound/time.Second))
	idle := max(secs/2, secs-maxKeepCount)
	return DeadPeer{
		Idle:        time.Duration(idle) * time.Second,
		Interval:    time.Second,
		Count:       secs - idle,
		UserTimeout: time.Duration(secs) * time.Second,
	}
}

// Dial connects like net.Dialer, with the dead-peer settings on TCP
// connections. It fits pgx's Config.DialFunc and go-sql-driver's
// Config.DialFunc.
func (d DeadPeer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: d.Idle, Interval: d.Interval, Count: d.Count},
		Control: func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			var err error
			if cerr := c.Control(func(fd uintptr) { err = setUserTimeout(fd, d.UserTimeout) }); cerr != nil {
				return cerr
			}
			return err
		},
	}
	return dialer.DialContext(ctx, network, addr)
}
