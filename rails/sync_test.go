package rails

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSyncOutput: the sync file is shared between runs when it is safe to
// load (this user's, written by nobody else, exactly the script), put
// right when it is not, and a run's own file, removed afterwards, when
// the shared name cannot be had.
func TestSyncOutput(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, shared string) // what is at the shared name before
		own   bool                              // the run must use (and remove) a file of its own
	}{
		{name: "nothing there", setup: func(*testing.T, string) {}},
		{name: "an earlier run's file", setup: func(t *testing.T, shared string) {
			write(t, shared, syncScript, 0o600)
		}},
		{name: "other content", setup: func(t *testing.T, shared string) {
			write(t, shared, "system('rm -rf ~')\n", 0o600)
		}},
		{name: "as long as the script", setup: func(t *testing.T, shared string) {
			write(t, shared, strings.Repeat("#", len(syncScript)-1)+"\n", 0o600)
		}},
		{name: "the script and more", setup: func(t *testing.T, shared string) {
			write(t, shared, syncScript+"system('id')\n", 0o600)
		}},
		{name: "writable by the group", setup: func(t *testing.T, shared string) {
			write(t, shared, syncScript, 0o620)
		}},
		{name: "another user's", setup: func(t *testing.T, shared string) {
			write(t, shared, syncScript, 0o644)
			if err := os.Chown(shared, 65534, 65534); err != nil {
				t.Skipf("cannot give the file to another user: %v", err)
			}
		}},
		{name: "a symlink to the script", setup: func(t *testing.T, shared string) {
			target := filepath.Join(t.TempDir(), "elsewhere.rb")
			write(t, target, syncScript, 0o600)
			if err := os.Symlink(target, shared); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a directory in the way", own: true, setup: func(t *testing.T, shared string) {
			if err := os.MkdirAll(filepath.Join(shared, "x"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("TMPDIR", dir)
			shared := filepath.Join(dir, sharedSyncName())
			tt.setup(t, shared)

			opt, remove, err := SyncOutput("-W0")
			if err != nil {
				t.Fatal(err)
			}
			path, ok := strings.CutPrefix(opt, "-W0 -r")
			if !ok {
				t.Fatalf("RUBYOPT %q does not keep the old value and add -r<file>", opt)
			}
			if got := (path != shared); got != tt.own {
				t.Fatalf("the run loads %s, want own file %v (shared is %s)", path, tt.own, shared)
			}
			safeToLoad(t, path)
			remove()
			if _, err := os.Lstat(path); tt.own != os.IsNotExist(err) {
				t.Fatalf("after remove, %s: %v; want it gone only if it was the run's own", path, err)
			}
			if tt.own {
				return
			}
			// The next run finds it and writes nothing.
			before, _ := os.ReadDir(dir)
			again, _, err := SyncOutput("")
			if err != nil || again != "-r"+shared {
				t.Fatalf("next run: %q %v, want -r%s", again, err, shared)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(before) {
				t.Errorf("the next run wrote a file: %d entries, then %d", len(before), len(after))
			}
		})
	}
}

func TestSyncOutputWhiteSpace(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "with space"))
	if _, _, err := SyncOutput(""); err == nil || !strings.Contains(err.Error(), "white space") {
		t.Errorf("a temp dir with white space: %v, want an error saying so", err)
	}
}

// safeToLoad fails t unless path is a regular file (not a symlink) of
// this user's, written by nobody else, holding exactly the script.
func safeToLoad(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 || int(st.Uid) != os.Geteuid() {
		t.Fatalf("%s: mode %v, owner %d: want a regular file of user %d that no one else may write", path, fi.Mode(), st.Uid, os.Geteuid())
	}
	if src, err := os.ReadFile(path); err != nil || string(src) != syncScript {
		t.Fatalf("%s holds %q (%v), want the script", path, src, err)
	}
}

func write(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}
