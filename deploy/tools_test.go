package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tool finds a command the tests run (helm, kustomize, file, qemu): on PATH,
// or in $(go env GOPATH)/bin, where `go install` puts it. Without it the
// test is skipped, saying how to get it; under CI=true (.ci/run, which
// installs every one of them) a missing tool fails the test instead.
func tool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: .ci/run installs it (%s)", name, install)
	}
	t.Skipf("%s not found (%s; .ci/run does)", name, install)
	return ""
}

// run runs a command in dir and returns its standard output; a failure
// fails the test with the command's standard error.
func run(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}
