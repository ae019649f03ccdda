package rails

import (
	"path"
	"strings"
	"testing"
)

var filenames = []struct {
	name  string
	glob  bool // Ruby's glob [0-9]*_*.rb matches it
	ok    bool // MigrationFilenameRegexp matches it
	want  MigrationFilename
	reads string // its version as Rails compares it
}{
	{"20240101000000_create_users.rb", true, true, MigrationFilename{"20240101000000", "create_users", ""}, "20240101000000"},
	{"001_init.rb", true, true, MigrationFilename{"001", "init", ""}, "1"},
	{"20240101000000_create_dogs.animals.rb", true, true, MigrationFilename{"20240101000000", "create_dogs", "animals"}, "20240101000000"},
	{"000_zero.rb", true, true, MigrationFilename{"000", "zero", ""}, "0"},
	{"20240101000000_.rb", true, true, MigrationFilename{"20240101000000", "", ""}, "20240101000000"},
	{"1_a..rb", true, true, MigrationFilename{"1", "a", ""}, "1"},
	{"1_a.rb.rb", true, true, MigrationFilename{"1", "a", "rb"}, "1"},
	{"1_.x.rb", true, true, MigrationFilename{"1", "", "x"}, "1"},
	{"1__a_1.rb", true, true, MigrationFilename{"1", "_a_1", ""}, "1"},
	// Found by the glob, refused by Rails: IllegalMigrationNameError.
	{"20240102000000-add_flag.rb", true, false, MigrationFilename{}, ""},
	{"20240102000000_AddFlag.rb", true, false, MigrationFilename{}, ""},
	{"20240102000000_add_flag.v2.x.rb", true, false, MigrationFilename{}, ""},
	{"20240102000000_add-flag.rb", true, false, MigrationFilename{}, ""},
	{"2024010200000a_add_flag.rb", true, false, MigrationFilename{}, ""},
	{"20240102000000_add flag.rb", true, false, MigrationFilename{}, ""},
	{"20240102000000_add_flag..rb.rb", true, false, MigrationFilename{}, ""},
	{"20240102000000_café.rb", true, false, MigrationFilename{}, ""},
	{"1x_a.rb", true, false, MigrationFilename{}, ""},
	// Not found by the glob at all.
	{"20240101000000create_users.rb", true, false, MigrationFilename{}, ""}, // a "_" after the first digit is all the glob needs
	{"_create_users.rb", false, false, MigrationFilename{}, ""},
	{"20240101000000_create_users.rb.bak", false, false, MigrationFilename{}, ""},
	{"20240101000000_create_users.RB", false, false, MigrationFilename{}, ""},
	{"schema.rb", false, false, MigrationFilename{}, ""},
	{".20240101000000_hidden.rb", false, false, MigrationFilename{}, ""},
	{"1.rb", false, false, MigrationFilename{}, ""},
	{"1_rb", false, false, MigrationFilename{}, ""},
	{"1_.rb", true, true, MigrationFilename{"1", "", ""}, "1"},
}

func TestParseMigrationFilename(t *testing.T) {
	for _, tt := range filenames {
		if got := matchesMigrationGlob(tt.name); got != tt.glob {
			t.Errorf("matchesMigrationGlob(%q) = %v, want %v", tt.name, got, tt.glob)
		}
		got, ok := ParseMigrationFilename(tt.name)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseMigrationFilename(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
		if ok && got.Version() != tt.reads {
			t.Errorf("%q: version %s, want %s", tt.name, got.Version(), tt.reads)
		}
	}
}

// TestMigrationFilenameMatchesRuby asks Ruby, for each name, whether
// Dir's glob pattern matches it (File.fnmatch, as Dir.glob matches each
// entry) and what MigrationFilenameRegexp reads from it.
func TestMigrationFilenameMatchesRuby(t *testing.T) {
	var names []string
	for _, tt := range filenames {
		names = append(names, tt.name)
	}
	alphabet := []string{"1", "_", "a", ".", "r", "b", "A", "-"}
	level := []string{""}
	for range 4 {
		var next []string
		for _, p := range level {
			for _, c := range alphabet {
				next = append(next, p+c)
			}
		}
		for _, n := range next {
			names = append(names, n, "1_"+n+".rb", n+".rb")
		}
		level = next
	}
	type answer struct {
		Glob  bool
		Match []string // nil: no match
	}
	var answers []answer
	runRuby(t, "", `
re = /\A([0-9]+)_([_a-z0-9]*)\.?([_a-z0-9]*)?\.rb\z/
puts JSON.generate(JSON.parse($stdin.read).map { |n|
  { "Glob" => File.fnmatch("[0-9]*_*.rb", n, File::FNM_PATHNAME), "Match" => n.scan(re).first }
})`, names, &answers)
	if len(answers) != len(names) {
		t.Fatalf("%d answers for %d names", len(answers), len(names))
	}
	failures := 0
	for i, name := range names {
		a := answers[i]
		got, ok := ParseMigrationFilename(name)
		glob := matchesMigrationGlob(name)
		want := MigrationFilename{}
		if a.Match != nil {
			want = MigrationFilename{a.Match[0], a.Match[1], a.Match[2]}
		}
		if glob != a.Glob || ok != (a.Match != nil) || got != want {
			t.Errorf("%q: glob %v, parsed %+v %v; Ruby: glob %v, %q", name, glob, got, ok, a.Glob, a.Match)
			if failures++; failures > 20 {
				t.Fatal("too many differences")
			}
		}
	}
}

// FuzzParseMigrationFilename holds ParseMigrationFilename to Rails'
// MigrationFilenameRegexp (migrationFilenameRegexp, the same expression).
func FuzzParseMigrationFilename(f *testing.F) {
	for _, tt := range filenames {
		f.Add(tt.name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, ok := ParseMigrationFilename(name)
		m := migrationFilenameRegexp.re().FindStringSubmatch(name)
		if ok != (m != nil) {
			t.Fatalf("ParseMigrationFilename(%q) ok = %v, the regexp says %v", name, ok, m != nil)
		}
		if ok && got != (MigrationFilename{m[1], m[2], m[3]}) {
			t.Fatalf("ParseMigrationFilename(%q) = %+v, the regexp reads %q", name, got, m[1:])
		}
	})
}

// FuzzMigrationFilename holds the glob's rule to path.Match (fnmatch
// without special cases, which is Ruby's for names starting with a digit),
// and checks that every name Rails accepts is one its glob finds.
func FuzzMigrationFilename(f *testing.F) {
	for _, tt := range filenames {
		f.Add(tt.name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if strings.Contains(name, "/") {
			return // not a directory entry's name
		}
		want, err := path.Match("[0-9]*_*.rb", name)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchesMigrationGlob(name); got != want {
			t.Fatalf("matchesMigrationGlob(%q) = %v, path.Match says %v", name, got, want)
		}
		if _, ok := ParseMigrationFilename(name); ok && !want {
			t.Fatalf("%q: Rails' regexp accepts a name its glob never finds", name)
		}
	})
}
