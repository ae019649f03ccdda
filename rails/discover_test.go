package rails

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// makeTree builds a tree under root from lines: "f path" a file, "d path"
// a directory, "l path target" a symlink, "m path mode" a chmod (octal).
func makeTree(t *testing.T, root string, lines ...string) {
	t.Helper()
	for _, line := range lines {
		fields := strings.Fields(line)
		path := filepath.Join(root, fields[1])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch fields[0] {
		case "f":
			err = os.WriteFile(path, []byte("class X < ActiveRecord::Migration[6.1]; end\n"), 0o644)
		case "d":
			err = os.MkdirAll(path, 0o755)
		case "l":
			err = os.Symlink(fields[2], path)
		case "m":
			var mode uint64
			for _, c := range fields[2] {
				mode = mode*8 + uint64(c-'0')
			}
			err = os.Chmod(path, os.FileMode(mode))
			t.Cleanup(func() { _ = os.Chmod(path, 0o755) }) // so that TempDir can remove it
		default:
			t.Fatalf("bad tree line %q", line)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// configMap is how Kubernetes mounts a ConfigMap holding two migrations:
// the files in a timestamped dot directory, ..data pointing at it, and a
// symlink per key through ..data.
var configMap = []string{
	"f db/migrate/..2024_06_01_12_00_00.123456789/20240101000000_create_users.rb",
	"f db/migrate/..2024_06_01_12_00_00.123456789/20240102000000_add_flag.rb",
	"l db/migrate/..data ..2024_06_01_12_00_00.123456789",
	"l db/migrate/20240101000000_create_users.rb ..data/20240101000000_create_users.rb",
	"l db/migrate/20240102000000_add_flag.rb ..data/20240102000000_add_flag.rb",
}

var globCases = []struct {
	name    string
	tree    []string
	paths   []string
	want    []string // Rel, sorted
	missing []string
	unsure  string // a substring of the one Unsure line expected; "" for none
	asRoot  bool   // the row needs a non-root user (permissions)
}{
	{
		name: "plain tree, nested, other files ignored",
		tree: []string{
			"f db/migrate/20240101000000_create_users.rb",
			"f db/migrate/nested/deeper/20240103000000_c.rb",
			"f db/migrate/README.md",
			"f db/migrate/schema.rb",
			"f db/migrate/20240104000000_d.rb.bak",
			"f db/migrate/9_early.rb",
		},
		paths: []string{"db/migrate"},
		want:  []string{"db/migrate/20240101000000_create_users.rb", "db/migrate/9_early.rb", "db/migrate/nested/deeper/20240103000000_c.rb"},
	},
	{
		name:  "the path itself a symlink: followed",
		tree:  []string{"f shared/migrations/20240101000000_a.rb", "f shared/migrations/sub/20240102000000_b.rb", "l db/migrate ../shared/migrations"},
		paths: []string{"db/migrate"},
		want:  []string{"db/migrate/20240101000000_a.rb", "db/migrate/sub/20240102000000_b.rb"},
	},
	{
		name: "symlinks below the path: returned when named so, never descended",
		tree: []string{
			"f db/migrate/20240101000000_a.rb",
			"f elsewhere/20240105000000_e.rb",
			"f elsewhere/sub/20240106000000_f.rb",
			"l db/migrate/linked ../../elsewhere",
			"l db/migrate/20240108000000_link.rb ../../elsewhere/20240105000000_e.rb",
			"l db/migrate/20240110000000_dangling.rb /nonexistent",
			"l db/migrate/20240113000000_dirlink.rb ../../elsewhere",
		},
		paths: []string{"db/migrate"},
		want:  []string{"db/migrate/20240101000000_a.rb", "db/migrate/20240108000000_link.rb", "db/migrate/20240110000000_dangling.rb", "db/migrate/20240113000000_dirlink.rb"},
	},
	{
		name: "dot directories skipped",
		tree: []string{
			"f db/migrate/20240101000000_a.rb",
			"f db/migrate/.hidden/20240103000000_c.rb",
			"f db/migrate/.git/20240104000000_d.rb",
			"f db/migrate/.20240107000000_g.rb",
		},
		paths: []string{"db/migrate"},
		want:  []string{"db/migrate/20240101000000_a.rb"},
	},
	{
		name:  "Kubernetes ConfigMap mount: the key symlinks only",
		tree:  configMap,
		paths: []string{"db/migrate"},
		want:  []string{"db/migrate/20240101000000_create_users.rb", "db/migrate/20240102000000_add_flag.rb"},
	},
	{
		name:  "a dot directory named as the path itself: followed",
		tree:  configMap,
		paths: []string{"db/migrate/..data"},
		want:  []string{"db/migrate/..data/20240101000000_create_users.rb", "db/migrate/..data/20240102000000_add_flag.rb"},
	},
	{
		name:  "a directory named like a migration: returned, and searched",
		tree:  []string{"f db/migrate/20240109000000_dir.rb/20240112000000_z.rb"},
		paths: []string{"db/migrate"},
		want:  []string{"db/migrate/20240109000000_dir.rb", "db/migrate/20240109000000_dir.rb/20240112000000_z.rb"},
	},
	{
		name:  "overlapping paths: found twice",
		tree:  []string{"f db/migrate/20240101000000_a.rb", "f db/migrate/sub/20240102000000_b.rb"},
		paths: []string{"db/migrate", "db/migrate/sub"},
		want:  []string{"db/migrate/20240101000000_a.rb", "db/migrate/sub/20240102000000_b.rb", "db/migrate/sub/20240102000000_b.rb"},
	},
	{
		name:  "one path twice, spelled differently",
		tree:  []string{"f db/migrate/20240101000000_a.rb"},
		paths: []string{"db/migrate", "./db/migrate/"},
		want:  []string{"db/migrate/20240101000000_a.rb", "db/migrate/20240101000000_a.rb"},
	},
	{
		name:    "a missing path and a file as a path: nothing there",
		tree:    []string{"f db/migrate/20240101000000_a.rb", "f db/notadir"},
		paths:   []string{"db/migrate", "db/missing", "db/notadir"},
		want:    []string{"db/migrate/20240101000000_a.rb"},
		missing: []string{"db/missing", "db/notadir"},
	},
	{
		name:   "glob characters in a path: cannot tell",
		tree:   []string{"f db/mig[r]ate/20240101000000_a.rb"},
		paths:  []string{"db/mig[r]ate"},
		unsure: "glob characters",
	},
	{
		name:   "an unreadable subdirectory: cannot tell",
		tree:   []string{"f db/migrate/20240101000000_a.rb", "f db/migrate/locked/20240102000000_b.rb", "m db/migrate/locked 000"},
		paths:  []string{"db/migrate"},
		want:   []string{"db/migrate/20240101000000_a.rb"},
		unsure: "cannot read db/migrate/locked",
		asRoot: true,
	},
	{
		name:   "an unreadable path: cannot tell",
		tree:   []string{"f db/migrate/20240101000000_a.rb", "m db/migrate 000"},
		paths:  []string{"db/migrate"},
		unsure: "cannot read migrations path db/migrate",
		asRoot: true,
	},
}

func TestGlobMigrations(t *testing.T) {
	for _, tt := range globCases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.asRoot && os.Geteuid() == 0 {
				t.Skip("root reads every directory: TestGlobAsNobody runs this row as nobody")
			}
			root := t.TempDir()
			makeTree(t, root, tt.tree...)
			g := globMigrations(root, tt.paths)
			var got []string
			for _, e := range g.Entries {
				got = append(got, e.Rel)
				if e.Path != filepath.Join(root, e.Rel) {
					t.Errorf("entry %+v: Path is not root/Rel", e)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries = %q\nwant      %q", got, tt.want)
			}
			if !slices.Equal(g.Missing, tt.missing) {
				t.Errorf("missing = %q, want %q", g.Missing, tt.missing)
			}
			switch {
			case tt.unsure == "" && len(g.Unsure) > 0:
				t.Errorf("unexpected unsure: %q", g.Unsure)
			case tt.unsure != "" && (len(g.Unsure) != 1 || !strings.Contains(g.Unsure[0], tt.unsure)):
				t.Errorf("unsure = %q, want one line with %q", g.Unsure, tt.unsure)
			}
		})
	}
}

// TestGlobMatchesRuby builds each tree and compares globMigrations with
// Ruby's own Dir[], run in the app root as Rails runs it (one Ruby for
// all the trees).
func TestGlobMatchesRuby(t *testing.T) {
	type tree struct {
		Root  string
		Paths []string
	}
	var trees []tree
	var names []string
	for _, tt := range globCases {
		if tt.unsure != "" && !tt.asRoot {
			continue // migrun refuses these; Ruby would answer something
		}
		if tt.asRoot && os.Geteuid() == 0 {
			continue // TestGlobAsNobody runs these as nobody
		}
		root := t.TempDir()
		makeTree(t, root, tt.tree...)
		trees = append(trees, tree{root, tt.paths})
		names = append(names, tt.name)
	}
	// An absolute path, from another working directory.
	abs := t.TempDir()
	makeTree(t, abs, configMap...)
	trees = append(trees, tree{t.TempDir(), []string{filepath.Join(abs, "db", "migrate")}})
	names = append(names, "absolute path")

	var ruby [][]string
	runRuby(t, "", `puts JSON.generate(JSON.parse($stdin.read).map { |t|
  Dir.chdir(t["Root"]) { Dir[*t["Paths"].flat_map { |p| "#{p}/**/[0-9]*_*.rb" }] }
})`, trees, &ruby)
	for i, tr := range trees {
		t.Run(names[i], func(t *testing.T) {
			want := ruby[i]
			for j, p := range want {
				want[j] = relTo(tr.Root, filepath.Clean(p))
			}
			slices.Sort(want)
			var got []string
			for _, e := range globMigrations(tr.Root, tr.Paths).Entries {
				got = append(got, e.Rel)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) || len(got) == 0 && names[i] != "an unreadable path: cannot tell" {
				t.Errorf("migrun finds %q\nRuby finds   %q", got, want)
			}
		})
	}
}

// TestGlobAsNobody runs the rows about permissions, which mean nothing to
// root, as user nobody: this test binary, copied where nobody can run it.
func TestGlobAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: TestGlobMigrations and TestGlobMatchesRuby ran these rows")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "migrun-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "rails.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^(TestGlobMigrations|TestGlobMatchesRuby)$/unreadable", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "TMPDIR="+os.TempDir(), "GOCOVERDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	for _, tt := range globCases {
		if !tt.asRoot {
			continue
		}
		name := strings.ReplaceAll(tt.name, " ", "_")
		if !strings.Contains(string(out), "--- PASS: TestGlobMigrations/"+name) {
			t.Errorf("row %q did not pass as nobody:\n%s", tt.name, out)
		}
		if _, err := exec.LookPath("ruby"); err == nil && !strings.Contains(string(out), "--- PASS: TestGlobMatchesRuby/"+name) {
			t.Errorf("Ruby's row %q did not pass as nobody:\n%s", tt.name, out)
		}
	}
}
