package rails

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMigrations(t *testing.T) {
	tests := []struct {
		name   string
		tree   []string
		paths  []string
		rules  migrationRules
		want   []string // version:Name:path, sorted by version
		unsure []string // substrings, one per expected line, in order
	}{
		{
			name:  "clean",
			tree:  []string{"f db/migrate/20240102000000_add_flag.rb", "f db/migrate/001_init.rb", "f db/migrate/20240101000000_create_dogs.animals.rb"},
			paths: []string{"db/migrate"},
			want:  []string{"1:Init:db/migrate/001_init.rb", "20240101000000:CreateDogs:db/migrate/20240101000000_create_dogs.animals.rb", "20240102000000:AddFlag:db/migrate/20240102000000_add_flag.rb"},
		},
		{
			name:   "illegal names",
			tree:   []string{"f db/migrate/20240101000000_ok.rb", "f db/migrate/20240102000000-add_flag.rb", "f db/migrate/20240103000000_AddFlag.rb", "f db/migrate/20240104000000_a.b.c.rb", "f db/migrate/20240105000000add_x.rb"},
			paths:  []string{"db/migrate"},
			want:   []string{"20240101000000:Ok:db/migrate/20240101000000_ok.rb"},
			unsure: []string{"20240102000000-add_flag.rb: Rails raises IllegalMigrationNameError", "20240103000000_AddFlag.rb: Rails raises IllegalMigrationNameError", "20240104000000_a.b.c.rb: Rails raises IllegalMigrationNameError", "20240105000000add_x.rb: Rails raises IllegalMigrationNameError"},
		},
		{
			name:   "a directory and a dangling symlink named like migrations",
			tree:   []string{"f db/migrate/20240101000000_ok.rb", "d db/migrate/20240102000000_dir.rb", "l db/migrate/20240103000000_gone.rb /nonexistent"},
			paths:  []string{"db/migrate"},
			want:   []string{"20240101000000:Ok:db/migrate/20240101000000_ok.rb"},
			unsure: []string{"20240102000000_dir.rb is a directory", "20240103000000_gone.rb is a symlink to nothing"},
		},
		{
			name:  "a ConfigMap's symlinks are files",
			tree:  configMap,
			paths: []string{"db/migrate"},
			want:  []string{"20240101000000:CreateUsers:db/migrate/20240101000000_create_users.rb", "20240102000000:AddFlag:db/migrate/20240102000000_add_flag.rb"},
		},
		{
			name:   "duplicate name, scope ignored, camelized alike",
			tree:   []string{"f db/migrate/20240101000000_create_users.rb", "f db/migrate/20240102000000_create__users.animals.rb"},
			paths:  []string{"db/migrate"},
			want:   []string{"20240101000000:CreateUsers:db/migrate/20240101000000_create_users.rb", "20240102000000:CreateUsers:db/migrate/20240102000000_create__users.animals.rb"},
			unsure: []string{"duplicate migration name CreateUsers: db/migrate/20240101000000_create_users.rb, db/migrate/20240102000000_create__users.animals.rb"},
		},
		{
			name:   "duplicate version, spelled differently",
			tree:   []string{"f db/migrate/20240101000000_a.rb", "f db/animals/020240101000000_b.rb"},
			paths:  []string{"db/migrate", "db/animals"},
			want:   []string{"20240101000000:B:db/animals/020240101000000_b.rb", "20240101000000:A:db/migrate/20240101000000_a.rb"},
			unsure: []string{"duplicate migration version 20240101000000: db/animals/020240101000000_b.rb, db/migrate/20240101000000_a.rb"},
		},
		{
			name:   "overlapping paths: every file twice",
			tree:   []string{"f db/migrate/sub/20240101000000_a.rb"},
			paths:  []string{"db/migrate", "db/migrate/sub"},
			want:   []string{"20240101000000:A:db/migrate/sub/20240101000000_a.rb", "20240101000000:A:db/migrate/sub/20240101000000_a.rb"},
			unsure: []string{"duplicate migration name A", "duplicate migration version 20240101000000"},
		},
		{
			name:   "names an acronym could make equal",
			tree:   []string{"f db/migrate/20240101000000_api_keys.rb", "f db/migrate/20240102000000_a_p_i_keys.rb"},
			paths:  []string{"db/migrate"},
			want:   []string{"20240101000000:ApiKeys:db/migrate/20240101000000_api_keys.rb", "20240102000000:APIKeys:db/migrate/20240102000000_a_p_i_keys.rb"},
			unsure: []string{"migration names ApiKeys, APIKeys differ only in underscores"},
		},
		{
			name:   "a timestamp Rails 7.2 refuses",
			tree:   []string{"f db/migrate/20240101000000_a.rb", "f db/migrate/20250101000000_b.rb", "f db/migrate/001_c.rb"},
			paths:  []string{"db/migrate"},
			rules:  migrationRules{TimestampLimit: timestampLimit(time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC))},
			want:   []string{"1:C:db/migrate/001_c.rb", "20240101000000:A:db/migrate/20240101000000_a.rb", "20250101000000:B:db/migrate/20250101000000_b.rb"},
			unsure: []string{"version 20250101000000 is not before 20250101000000 (now plus one day): Rails 7.2+ raises InvalidMigrationTimestampError"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, tt.tree...)
			g := globMigrations(root, tt.paths)
			files, unsure := readMigrations(g.Entries, tt.rules)
			var got []string
			for _, f := range files {
				got = append(got, f.Version+":"+f.Name+":"+f.Path)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("files = %q\nwant    %q", got, tt.want)
			}
			if len(unsure) != len(tt.unsure) {
				t.Fatalf("unsure = %q\nwant      %q", unsure, tt.unsure)
			}
			for i, u := range unsure {
				if !strings.Contains(u, tt.unsure[i]) {
					t.Errorf("unsure[%d] = %q, want it to contain %q", i, u, tt.unsure[i])
				}
			}
		})
	}
}

func TestPending(t *testing.T) {
	files := []MigrationFile{{Version: "1"}, {Version: "9"}, {Version: "20240101000000"}, {Version: "20240102000000"}, {Version: "20240103000000"}}
	// schema_migrations' values as they may be spelled; Ruby's to_i reads them.
	applied := []string{"0001", " 9", "20240101000000 ", "2024_0102_000000", "20240103000000x", "abc", "-5"}
	if got := Pending(files, applied); len(got) != 0 {
		t.Errorf("Pending = %+v, want none", got)
	}
	got := Pending(files, []string{"1", "9", "20240101000000"})
	if len(got) != 2 || got[0].Version != "20240102000000" || got[1].Version != "20240103000000" {
		t.Errorf("Pending = %+v", got)
	}
	// "abc".to_i is 0: a row Rails reads as version 0 applies 0_x.rb.
	if got := Pending([]MigrationFile{{Version: "0"}}, []string{"abc"}); len(got) != 0 {
		t.Errorf("Pending with a 0 version = %+v", got)
	}
}
