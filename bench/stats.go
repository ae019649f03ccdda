package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// sample is a set of measurements of one quantity.
type sample []float64

func durations(ds []time.Duration) sample {
	s := make(sample, len(ds))
	for i, d := range ds {
		s[i] = float64(d)
	}
	return s
}

// quantile is the q-quantile (0..1) with linear interpolation between the
// closest ranks (Hyndman & Fan type 7, as R and NumPy default to).
func (s sample) quantile(q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

func (s sample) median() float64 { return s.quantile(0.5) }
func (s sample) p99() float64    { return s.quantile(0.99) }
func (s sample) min() float64    { return s.quantile(0) }
func (s sample) max() float64    { return s.quantile(1) }

// medianDur and friends read a sample of durations (nanoseconds).
func (s sample) medianDur() time.Duration { return time.Duration(s.median()) }
func (s sample) p99Dur() time.Duration    { return time.Duration(s.p99()) }

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// us formats a duration in microseconds.
func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

// mib formats bytes in MiB.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// mb formats bytes in decimal megabytes, as binary sizes are usually quoted.
func mb(b float64) string { return fmt.Sprintf("%.1f MB", b/1e6) }

// rate formats bytes per second in MiB/s.
func rate(bytesPerSec float64) string { return fmt.Sprintf("%.0f MiB/s", bytesPerSec/(1<<20)) }

func ratio(x, base float64) string {
	if base == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", x/base)
}
