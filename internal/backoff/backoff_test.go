package backoff

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	for i, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		base *= time.Millisecond
		d := b.Next()
		if d < base*8/10 || d > base*12/10 {
			t.Errorf("wait %d = %s, want %s ±20%%", i, d, base)
		}
	}
}
