package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHugeOutputFlatMemory: a command writing 1 GiB, in 4 KiB lines and
// with no newline at all, passes through migrun whole and nothing blocks,
// while migrun's peak RSS stays where it is for 1 MiB of the same output:
// memory does not grow with the output.
func TestHugeOutputFlatMemory(t *testing.T) {
	const small, huge = 1 << 20, 1 << 30
	shapes := map[string]string{
		// 4095 x's and a newline, over and over.
		"4 KiB lines": `yes "$(head -c 4095 /dev/zero | tr '\0' x)" | head -c %d`,
		"no newline":  `head -c %d /dev/zero | tr '\0' x`,
	}
	for name, script := range shapes {
		t.Run(name, func(t *testing.T) {
			base := outputRun(t, script, small)
			peak := outputRun(t, script, huge)
			t.Logf("peak RSS: %d KiB for 1 MiB of output, %d KiB for 1 GiB", base, peak)
			// A copy held in memory would be 1 GiB; the bound is the capture
			// (a head and a tail of 64 KiB) and buffers, the same for both.
			if grown := peak - base; grown > 16<<10 {
				t.Errorf("peak RSS grew by %d KiB from 1 MiB to 1 GiB of output", grown)
			}
		})
	}
}

// outputRun runs migrun with a command printing size bytes through script
// (a format taking the size), checks that all of it came through, and
// returns migrun's peak RSS in KiB.
func outputRun(t *testing.T, script string, size int64) int64 {
	t.Helper()
	rssFile := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.Command(maxrssBin, migrunBin, "run", "--", "sh", "-c", fmt.Sprintf(script, size))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "MIGRUN_LOCK_MODE=none", "MIGRUN_TERMINATION_LOG=/dev/null", "MAXRSS_OUT=" + rssFile}
	var out countingWriter
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("migrun: %v\n%s", err, stderr.String())
	}
	if out.n != size {
		t.Fatalf("%d bytes came through, want %d", out.n, size)
	}
	// The largest of migrun's own peak and its children's (sh and the small
	// tools it runs): migrun's, in practice.
	data, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatal(err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatalf("maxrss wrote %q", data)
	}
	return kib
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
