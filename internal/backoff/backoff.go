// Package backoff is migrun's one retry schedule: waits that double from
// a first to a most, each spread by ±20% so that runners woken together
// (fifty Pods, ten waiters) do not retry in step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff hands out the waits between attempts. The zero value is not
// usable; make one with New.
type Backoff struct {
	next, most time.Duration
}

// New starts a schedule at first, doubling up to most.
func New(first, most time.Duration) *Backoff {
	return &Backoff{next: first, most: most}
}

// Next is the wait before the next attempt, jittered.
func (b *Backoff) Next() time.Duration {
	d := Jitter(b.next)
	b.next = min(b.next*2, b.most)
	return d
}

// Jitter spreads d by ±20%.
func Jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
