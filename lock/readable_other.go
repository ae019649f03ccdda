//go:build !linux

package lock

import (
	"context"
	"net"
	"time"
)

// waitReadable only waits where the socket cannot be polled: a
// connection that ends between checks is found by the next check.
func waitReadable(ctx context.Context, _ net.Conn, until time.Time) (bool, error) {
	return false, waitUntil(ctx, until)
}
