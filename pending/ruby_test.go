package pending

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ruby runs a Ruby script and returns its stdout. Without Ruby the test
// skips, or fails under CI=true.
func ruby(t *testing.T, script string) string {
	t.Helper()
	bin, err := exec.LookPath("ruby")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ruby is not installed (apt-get install ruby ruby-activerecord ruby-pg): %v", err)
		}
		t.Skipf("ruby is not installed: %v", err)
	}
	out, err := exec.Command(bin, "-e", script).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("ruby: %v\n%s", err, stderr)
	}
	return string(out)
}

// rubyString is s as a single-quoted Ruby literal.
func rubyString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
