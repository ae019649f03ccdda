package runner

import (
	"fmt"
	"sync"
)

// capture keeps a bounded copy of everything written to it: the first
// headMax bytes, and the last tailMax bytes in a ring, counting what falls
// in between. Its memory never exceeds headMax+tailMax, however much is
// written, so a command printing gigabytes cannot exhaust migrun.
type capture struct {
	mu      sync.Mutex
	headMax int
	tailMax int
	head    []byte
	ring    []byte // allocated on the first byte past the head
	start   int    // index in ring of the oldest kept tail byte
	size    int    // tail bytes kept in ring
	omitted int64
}

func newCapture(headMax, tailMax int) *capture {
	return &capture{
		headMax: max(headMax, 0),
		tailMax: max(tailMax, 0),
	}
}

// Write never fails: it is shared by the stdout and stderr readers, which
// take the mutex so the copy keeps the order in which output arrived.
func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	if room := c.headMax - len(c.head); room > 0 {
		if room > len(p) {
			room = len(p)
		}
		if c.head == nil {
			c.head = make([]byte, 0, c.headMax)
		}
		c.head = append(c.head, p[:room]...)
		p = p[room:]
	}
	if len(p) > 0 {
		c.writeTail(p)
	}
	return n, nil
}

func (c *capture) writeTail(p []byte) {
	if c.tailMax == 0 {
		c.omitted += int64(len(p))
		return
	}
	if c.ring == nil {
		c.ring = make([]byte, c.tailMax)
	}
	if len(p) >= c.tailMax {
		// p alone fills the ring: everything kept so far is pushed out.
		c.omitted += int64(c.size) + int64(len(p)-c.tailMax)
		copy(c.ring, p[len(p)-c.tailMax:])
		c.start, c.size = 0, c.tailMax
		return
	}
	end := (c.start + c.size) % c.tailMax
	copied := copy(c.ring[end:], p)
	copy(c.ring, p[copied:])
	if over := c.size + len(p) - c.tailMax; over > 0 {
		c.omitted += int64(over)
		c.start = (c.start + over) % c.tailMax
		c.size = c.tailMax
	} else {
		c.size += len(p)
	}
}

// omittedMarker is the line that stands for the bytes left out of the middle.
func omittedMarker(n int64) string {
	return fmt.Sprintf("\n[... migrun: %d bytes omitted ...]\n", n)
}

// result returns the kept output, with the marker between head and tail when
// something was left out, and how many bytes were left out.
func (c *capture) result() (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var marker string
	if c.omitted > 0 {
		marker = omittedMarker(c.omitted)
	}
	buf := make([]byte, 0, len(c.head)+len(marker)+c.size)
	buf = append(buf, c.head...)
	buf = append(buf, marker...)
	if c.size > 0 {
		end := c.start + c.size
		if end <= c.tailMax {
			buf = append(buf, c.ring[c.start:end]...)
		} else {
			buf = append(buf, c.ring[c.start:]...)
			buf = append(buf, c.ring[:end-c.tailMax]...)
		}
	}
	return string(buf), c.omitted
}
