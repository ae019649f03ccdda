package rails

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseMigrationFilename(t *testing.T) {
	tests := []struct {
		name    string
		version string
		ok      bool
	}{
		{"20240101000000_create_users.rb", "20240101000000", true},
		{"001_init.rb", "1", true},
		{"20240101000000_create_dogs.animals.rb", "20240101000000", true},
		{"000_zero.rb", "0", true},
		{"20240101000000create_users.rb", "", false},
		{"_create_users.rb", "", false},
		{"20240101000000_create_users.rb.bak", "", false},
		{"schema.rb", "", false},
		{"20240101000000_.rb", "20240101000000", true},
	}
	for _, tt := range tests {
		v, ok := ParseMigrationFilename(tt.name)
		if v != tt.version || ok != tt.ok {
			t.Errorf("ParseMigrationFilename(%q) = %q, %v; want %q, %v", tt.name, v, ok, tt.version, tt.ok)
		}
	}
}

func TestMigrationFilesAndPending(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{
		"db/migrate/20240102000000_b.rb",
		"db/migrate/20240101000000_a.rb",
		"db/migrate/nested/deeper/20240103000000_c.rb",
		"db/migrate/README.md",
		"db/migrate/9_early.rb",
		"db/animals_migrate/20240105000000_dogs.rb",
	} {
		path := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := MigrationFiles(ResolvePaths(root, []string{"db/migrate", "db/missing"}))
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, f := range files {
		versions = append(versions, f.Version)
	}
	if want := []string{"9", "20240101000000", "20240102000000", "20240103000000"}; !reflect.DeepEqual(versions, want) {
		t.Fatalf("versions = %v, want %v", versions, want)
	}
	pending := Pending(files, []string{"20240101000000", "0009", "20240103000000"})
	if len(pending) != 1 || pending[0].Version != "20240102000000" || !strings.HasSuffix(pending[0].Path, "20240102000000_b.rb") {
		t.Errorf("pending = %+v", pending)
	}

	if err := os.WriteFile(filepath.Join(root, "db/animals_migrate/20240101000000_dup.rb"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MigrationFiles(ResolvePaths(root, []string{"db/migrate", "db/animals_migrate"})); err == nil || !strings.Contains(err.Error(), "20240101000000") {
		t.Errorf("duplicate version not reported: %v", err)
	}
}

func FuzzParseMigrationFilename(f *testing.F) {
	for _, s := range []string{"20240101000000_create_users.rb", "1_a.rb", "x.rb", "0000_.rb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, ok := ParseMigrationFilename(name)
		if !ok {
			return
		}
		if v == "" || strings.TrimLeft(v, "0123456789") != "" || (len(v) > 1 && v[0] == '0') {
			t.Fatalf("bad version %q from %q", v, name)
		}
		if !strings.HasSuffix(name, ".rb") || !strings.Contains(name, "_") {
			t.Fatalf("accepted %q", name)
		}
	})
}
