package lock

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waitReadable waits, without reading, until c has something to read
// (data, its end, an error) or until passes or ctx ends; it reports
// whether c became readable. It waits in Go's netpoller (RawConn.Read),
// so a deadline or ctx wakes it; the read deadline it sets is cleared
// before it returns, so the owner of c finds it as it was.
func waitReadable(ctx context.Context, c net.Conn, until time.Time) (bool, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, waitUntil(ctx, until)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	if err := c.SetReadDeadline(until); err != nil {
		return false, err
	}
	var mu sync.Mutex // orders the wake-up below against the reset after
	waiting := true
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if waiting {
			_ = c.SetReadDeadline(time.Now())
		}
	})
	readable := false
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, perr := unix.Poll(fds, 0)
		readable = n > 0 || (perr != nil && !errors.Is(perr, unix.EINTR))
		return readable
	})
	stop()
	mu.Lock()
	waiting = false
	rerr := c.SetReadDeadline(time.Time{})
	mu.Unlock()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, rerr
	case err != nil:
		return false, err
	}
	return readable, rerr
}
