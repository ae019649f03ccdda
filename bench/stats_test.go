package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The benchmarks assert no time; these check the arithmetic they report with.

func TestQuantile(t *testing.T) {
	s := sample{5, 1, 4, 2, 3}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {1, 5}, {0.25, 2}, {0.99, 4.96}} {
		if got := s.quantile(c.q); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (sample{7}).quantile(0.99); got != 7 {
		t.Errorf("one value: %v", got)
	}
}

func TestReadMarks(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "marks")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cs, err := readMarks(write("start 10 1 9\nend 20 1 9 5\nstart 25 2 8\nend 40 2 8 6\n"))
	if err != nil || len(cs) != 2 || cs[1].start.Sub(cs[0].end) != 5 || cs[1].ppid != 8 || cs[0].cpu != 5 {
		t.Fatalf("readMarks = %+v, %v", cs, err)
	}
	if _, err := readMarks(write("start 10 1 9\nstart 15 2 8\nend 20 1 9 5\nend 40 2 8 6\n")); err == nil {
		t.Error("overlapping sections were not reported")
	}
}
