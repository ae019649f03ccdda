package rails

import (
	"os"
	"strings"
	"testing"
)

func TestSyncOutput(t *testing.T) {
	opt, remove, err := SyncOutput("-W0")
	if err != nil {
		t.Fatal(err)
	}
	path, ok := strings.CutPrefix(opt, "-W0 -r")
	if !ok {
		t.Fatalf("RUBYOPT %q does not keep the old value and add -r<file>", opt)
	}
	src, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(src), "$stdout.sync = true") {
		t.Fatalf("sync file %s: %v %q", path, err, src)
	}
	remove()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the sync file is still there after remove: %v", err)
	}
}
