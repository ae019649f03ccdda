package rails

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/migrun/migrun/internal/railsapp"
)

// TestMain removes the Rails app template the tests bundled.
func TestMain(m *testing.M) {
	code := m.Run()
	railsapp.Remove()
	os.Exit(code) // os.Exit skips deferred calls
}

// writeManifest runs ManifestScript in app as an image build would,
// with a placeholder DATABASE_URL; it returns the runner's stderr and exit error.
func writeManifest(t *testing.T, app, databaseURL string) (stderr string, err error) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "migrun-manifest.rb")
	if err := os.WriteFile(script, ManifestScript, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bin/rails", "runner", script)
	cmd.Dir = app
	cmd.Env = append(os.Environ(), "RAILS_ENV=production", "DATABASE_URL="+databaseURL)
	var buf bytes.Buffer
	cmd.Stderr = &buf
	err = cmd.Run()
	return buf.String(), err
}

func TestManifestScript(t *testing.T) {
	const placeholder = "postgres://build.invalid/placeholder"
	tests := []struct {
		name   string
		url    string
		tree   []string
		files  map[string]string
		fails  string // a substring of stderr when the script must fail
		check  func(t *testing.T, m *Manifest)
		unsure []string // what Analyze says with the manifest
	}{
		{
			name: "the test app",
			check: func(t *testing.T, m *Manifest) {
				if m.Environment != "production" || !strings.HasPrefix(m.RailsVersion, "6.1") || len(m.Databases) != 1 {
					t.Fatalf("manifest %+v", m)
				}
				db := m.Databases[0]
				if db.Name != "primary" || db.SchemaMigrationsTable != "schema_migrations" || len(db.Migrations) != 2 ||
					db.Migrations[0].File != "db/migrate/20240101000000_create_users.rb" || db.MigrationsPaths[0].Path != "db/migrate" {
					t.Errorf("database %+v", db)
				}
			},
		},
		{
			name: "multi-database, prefix and suffix, search paths",
			url:  placeholder + "?schema_search_path=from_the_build_url",
			tree: []string{"f db/animals_migrate/20240201000000_create_dogs.rb"},
			files: map[string]string{
				"config/database.yml": `default: &default
  adapter: postgresql
production:
  primary:
    <<: *default
    database: app
    schema_search_path: "app,public"
  primary_replica:
    <<: *default
    database: app
    replica: true
  animals:
    <<: *default
    database: animals
    migrations_paths: db/animals_migrate
    variables:
      search_path: zoo
  cache:
    <<: *default
    database: cache
    database_tasks: false
`,
				"config/initializers/table_names.rb": "ActiveRecord::Base.table_name_prefix = \"app_\"\nActiveRecord::Base.table_name_suffix = \"_v1\"\n",
			},
			check: func(t *testing.T, m *Manifest) {
				var names []string
				for _, db := range m.Databases {
					names = append(names, db.Name)
					if db.SchemaMigrationsTable != "app_schema_migrations_v1" {
						t.Errorf("%s: table %q", db.Name, db.SchemaMigrationsTable)
					}
				}
				// Rails 6.1 checks database_tasks: false databases; 7.0+ would not.
				if !slices.Equal(names, []string{"primary", "animals", "cache"}) {
					t.Fatalf("databases %q", names)
				}
				primary, animals := m.Databases[0], m.Databases[1]
				if primary.SchemaSearchPath == nil || *primary.SchemaSearchPath != "app,public" || primary.SearchPathVariable != nil {
					t.Errorf("primary's search path %v %v", primary.SchemaSearchPath, primary.SearchPathVariable)
				}
				if animals.SchemaSearchPath != nil || animals.SearchPathVariable == nil || *animals.SearchPathVariable != "zoo" {
					t.Errorf("animals' search path %v %v", animals.SchemaSearchPath, animals.SearchPathVariable)
				}
				if len(animals.Migrations) != 1 || animals.Migrations[0].File != "db/animals_migrate/20240201000000_create_dogs.rb" || animals.MigrationsPaths[0].Configured != "db/animals_migrate" {
					t.Errorf("animals %+v", animals)
				}
			},
		},
		{
			name: "a ConfigMap mount, hidden directories, an acronym",
			tree: []string{
				"f db/migrate/.trash/20230101000000_old.rb",
				"f db/migrate/sub/20240301000000_api_keys.rb",
				"f db/migrate/cm/..2024_06_01_12_00_00.1/20240401000000_add_flag.rb",
				"l db/migrate/cm/..data ..2024_06_01_12_00_00.1",
				"l db/migrate/cm/20240401000000_add_flag.rb ..data/20240401000000_add_flag.rb",
			},
			files: map[string]string{"config/initializers/inflections.rb": "ActiveSupport::Inflector.inflections(:en) { |i| i.acronym \"API\" }\n"},
			check: func(t *testing.T, m *Manifest) {
				var files []string
				for _, mig := range m.Databases[0].Migrations {
					files = append(files, mig.Name+" "+mig.File)
				}
				want := []string{
					"CreateUsers db/migrate/20240101000000_create_users.rb",
					"AddIndexToUsersEmail db/migrate/20240102000000_add_index_to_users_email.rb",
					"APIKeys db/migrate/sub/20240301000000_api_keys.rb",
					"AddFlag db/migrate/cm/20240401000000_add_flag.rb",
				}
				if !slices.Equal(files, want) {
					t.Errorf("migrations %q\nwant       %q", files, want)
				}
			},
		},
		{
			name:  "an illegal name",
			tree:  []string{"f db/migrate/20240301000000-add_flag.rb"},
			fails: "IllegalMigrationNameError",
		},
		{
			name:  "duplicate names",
			tree:  []string{"f db/migrate/20240301000000_create__users.rb"},
			fails: "DuplicateMigrationNameError",
		},
		{
			name: "ERB in database.yml",
			files: map[string]string{"config/database.yml": `production:
  adapter: postgresql
<% if ENV["NEVER_SET"] %>
  schema_search_path: <%= ENV["NEVER_SET"] %>
<% end %>
`},
			check: func(t *testing.T, m *Manifest) {
				if len(m.DynamicSettings) != 3 || m.DynamicSettings[0].Setting != "erb" || m.DynamicSettings[1].Setting != "schema_search_path" || m.DynamicSettings[1].Line != 4 {
					t.Errorf("dynamic settings %+v", m.DynamicSettings)
				}
			},
			unsure: []string{"config/database.yml:3: ERB may give Rails other databases", "config/database.yml:5: ERB may give Rails other databases"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := railsapp.New(t)
			makeTree(t, app, tt.tree...)
			writeFiles(t, app, tt.files)
			if tt.url == "" {
				tt.url = placeholder
			}
			stderr, err := writeManifest(t, app, tt.url)
			path := filepath.Join(app, DefaultManifest)
			if tt.fails != "" {
				if err == nil || !strings.Contains(stderr, tt.fails) {
					t.Fatalf("the script should fail with %s: %v\n%s", tt.fails, err, stderr)
				}
				if _, err := os.Stat(path); err == nil {
					t.Error("a failed script left a manifest")
				}
				return
			}
			if err != nil {
				t.Fatalf("manifest script: %v\n%s", err, stderr)
			}
			m, err := ReadManifest(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
			a := Analyze(App{Root: app, Environment: "production"})
			if a.Manifest != path || !unsureMatch(a.Unsure, tt.unsure) {
				t.Errorf("analysis with the manifest: %q, want %q", a.Unsure, tt.unsure)
			}
			// Without the manifest, migrun's own discovery finds the same
			// files, when it is sure of itself.
			if err := os.Rename(path, path+".away"); err != nil {
				t.Fatal(err)
			}
			own := Analyze(App{Root: app, Environment: "production"})
			if len(own.Unsure) == 0 && len(a.Unsure) == 0 {
				if len(own.Databases) != 1 || len(a.Databases) != 1 {
					t.Fatalf("databases: own %d, manifest %d", len(own.Databases), len(a.Databases))
				}
				var mine, rails []string
				for _, f := range own.Databases[0].Files {
					mine = append(mine, f.Version+" "+f.Path)
				}
				for _, f := range a.Databases[0].Files {
					rails = append(rails, f.Version+" "+f.Path)
				}
				if !slices.Equal(mine, rails) {
					t.Errorf("migrun's own discovery %q\nRails'                 %q", mine, rails)
				}
			}
		})
	}
}

func unsureMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.Contains(got[i], want[i]) {
			return false
		}
	}
	return true
}
