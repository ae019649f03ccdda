package rails

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// railsAppTree is a minimal Rails app's files, with two migrations.
var railsAppTree = []string{
	"f config/application.rb",
	"f config/environment.rb",
	"f db/migrate/20240101000000_create_users.rb",
	"f db/migrate/20240102000000_add_index_to_users_email.rb",
}

// writeFiles writes files (path → content) under root.
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const threeTierYML = `default: &default
  adapter: postgresql
production:
  primary:
    <<: *default
    database: app
  primary_replica:
    <<: *default
    replica: true
  animals:
    <<: *default
    database: animals
  cache:
    <<: *default
    database_tasks: false
`

func TestAnalyzeApp(t *testing.T) {
	primaryDefault := []DatabasePaths{{Name: "primary", Paths: []string{"db/migrate"}}}
	tests := []struct {
		name      string
		tree      []string          // besides railsAppTree unless bare
		files     map[string]string // path → content
		bare      bool              // no railsAppTree
		databases []DatabasePaths
		table     TableName
		unsure    []string // substrings, one per expected line, in order
		files0    int      // files of the first database, when no unsure
		check     func(t *testing.T, a Analysis)
	}{
		{name: "a plain app", files0: 2, check: func(t *testing.T, a Analysis) {
			db := a.Databases[0]
			if db.Name != "primary" || db.Table != "schema_migrations" || db.SearchPathFromURL != "" || db.Files[0].Name != "CreateUsers" {
				t.Errorf("database %+v", db)
			}
		}},
		{name: "the wrong directory", bare: true, unsure: []string{"no Rails app in"}},
		{
			name: "the wrong directory, paths given", bare: true,
			tree:      []string{"f migrations/20240101000000_a.rb"},
			databases: []DatabasePaths{{Name: "primary", Paths: []string{"migrations"}}},
			files0:    1,
		},
		{name: "no db/migrate", bare: true, tree: []string{"f config/application.rb"}, unsure: []string{"migrations path db/migrate of database primary is not a directory"}},
		{name: "an empty db/migrate", bare: true, tree: []string{"f config/environment.rb", "d db/migrate"}, unsure: []string{"no migration files for database primary"}},
		{name: "an illegal name", tree: []string{"f db/migrate/20240103000000-add_flag.rb"}, unsure: []string{"20240103000000-add_flag.rb: Rails raises IllegalMigrationNameError"}},
		{name: "a hidden directory and a ConfigMap", bare: true, tree: append([]string{"f config/application.rb", "f db/migrate/.old/20230101000000_x.rb"}, configMap...), files0: 2},
		{
			name: "db/migrate a symlink", bare: true,
			tree:   []string{"f config/application.rb", "f shared/20240101000000_a.rb", "l db/migrate ../shared"},
			files0: 1,
		},
		{
			name: "three-tier database.yml", files: map[string]string{"config/database.yml": threeTierYML},
			unsure: []string{"Rails checks databases primary, animals, cache in production, migrun only primary"},
		},
		{
			name: "three-tier, all told", files: map[string]string{"config/database.yml": threeTierYML},
			tree:      []string{"f db/animals_migrate/20240201000000_dogs.rb"},
			databases: []DatabasePaths{{"primary", []string{"db/migrate"}}, {"animals", []string{"db/animals_migrate"}}, {"cache", []string{"db/migrate"}}},
			files0:    2,
		},
		{
			name: "three-tier, one left out", files: map[string]string{"config/database.yml": threeTierYML},
			databases: []DatabasePaths{{"primary", []string{"db/migrate"}}, {"cache", []string{"db/migrate"}}},
			unsure:    []string{"Rails checks database animals (production), which MIGRUN_DATABASES leaves out"},
		},
		{
			name:      "three-tier on Rails 7.1: database_tasks: false is not checked",
			files:     map[string]string{"config/database.yml": threeTierYML, "Gemfile.lock": "GEM\n  specs:\n    activerecord (7.1.3)\n"},
			tree:      []string{"f db/animals_migrate/20240201000000_dogs.rb"},
			databases: []DatabasePaths{{"primary", []string{"db/migrate"}}, {"animals", []string{"db/animals_migrate"}}},
			files0:    2,
		},
		{
			name: "migrations_paths in database.yml", files: map[string]string{"config/database.yml": "production:\n  adapter: postgresql\n  migrations_paths: db/other\n"},
			unsure: []string{"config/database.yml:3 sets migrations_paths"},
		},
		{
			name: "migrations_paths in database.yml, paths told", files: map[string]string{"config/database.yml": "production:\n  adapter: postgresql\n  migrations_paths: db/migrate\n"},
			databases: primaryDefault,
			files0:    2,
		},
		{
			name: "schema_search_path in database.yml: the URL must say", files: map[string]string{"config/database.yml": "default: &d\n  schema_search_path: app\nproduction:\n  <<: *d\n"},
			files0: 2,
			check: func(t *testing.T, a Analysis) {
				if !strings.Contains(a.Databases[0].SearchPathFromURL, "config/database.yml:2 sets schema_search_path") {
					t.Errorf("SearchPathFromURL = %q", a.Databases[0].SearchPathFromURL)
				}
			},
		},
		{
			name: "a search_path variable", files: map[string]string{"config/database.yml": "production:\n  variables:\n    search_path: app\n  adapter: postgresql\n"},
			unsure: []string{"config/database.yml:3 sets search_path (variables:)"},
		},
		{
			name: "table_name_prefix in an initializer", files: map[string]string{"config/initializers/prefix.rb": "ActiveRecord::Base.table_name_prefix = \"app_\"\n"},
			unsure: []string{"config/initializers/prefix.rb:1 mentions table_name_prefix"},
		},
		{
			name: "table_name_prefix in an initializer, prefix told", files: map[string]string{"config/initializers/deep/prefix.rb": "ActiveRecord::Base.table_name_prefix = \"app_\"\n"},
			table:  TableName{Prefix: "app_", PrefixSet: true},
			files0: 2,
			check: func(t *testing.T, a Analysis) {
				if a.Databases[0].Table != "app_schema_migrations" {
					t.Errorf("table %q", a.Databases[0].Table)
				}
			},
		},
		{
			name: "suffix and table name in the environment's file, commented elsewhere",
			files: map[string]string{
				"config/environments/production.rb":  "Rails.application.configure do\n  config.active_record.table_name_suffix = \"_x\"\n  config.active_record.schema_migrations_table_name = \"migrations\"\nend\n",
				"config/environments/development.rb": "  config.active_record.table_name_prefix = \"dev_\"\n",
				"config/application.rb":              "# config.active_record.table_name_prefix = \"x\"\n=begin\nconfig.paths['db/migrate'] << 'x'\n=end\n",
			},
			unsure: []string{"config/environments/production.rb:2 mentions table_name_suffix", "config/environments/production.rb:3 mentions schema_migrations_table_name"},
		},
		{
			name: "migrations paths in config/application.rb", files: map[string]string{"config/application.rb": "config.paths[\"db/migrate\"] << \"lib/migrate\"\n"},
			unsure: []string{"config/application.rb:1 mentions migrations paths"},
		},
		{
			name: "a path engine with migrations", files: map[string]string{"Gemfile": "gem \"rails\"\ngem \"billing\", path: \"engines/billing\"\ngem 'blog', :path => 'engines/blog'\n"},
			tree:   []string{"f engines/billing/db/migrate/20240301000000_create_invoices.rb", "f engines/blog/lib/blog.rb"},
			unsure: []string{"Gemfile:2: path gem engines/billing has engines/billing/db/migrate"},
		},
		{
			name: "the app itself as a path gem", files: map[string]string{"Gemfile": "gem \"app\", path: \".\"\n"},
			files0: 2,
		},
		{
			name: "explicit, but no database", databases: []DatabasePaths{},
			unsure: []string{"no database to check"},
		},
		{
			name: "explicit, but no path", databases: []DatabasePaths{{Name: "primary"}},
			unsure: []string{"no migration files for database primary"},
		},
		{
			name: "a path block of engines", files: map[string]string{"Gemfile": "path \"components\" do\n  gem \"billing\"\nend\n"},
			tree:   []string{"f components/billing/db/migrate/20240301000000_create_invoices.rb"},
			unsure: []string{"Gemfile:1: path gem components/billing has components/billing/db/migrate"},
		},
		{
			name: "a future timestamp, Rails 7.2", files: map[string]string{"Gemfile.lock": "    activerecord (7.2.1)\n"},
			tree:   []string{"f db/migrate/29990101000000_later.rb"},
			unsure: []string{"version 29990101000000 is not before"},
		},
		{
			name: "a future timestamp, Rails 6.1", files: map[string]string{"Gemfile.lock": "    activerecord (6.1.7.10)\n"},
			tree:   []string{"f db/migrate/29990101000000_later.rb"},
			files0: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if !tt.bare {
				makeTree(t, root, railsAppTree...)
			}
			makeTree(t, root, tt.tree...)
			writeFiles(t, root, tt.files)
			a := Analyze(App{Root: root, Environment: "production", Databases: tt.databases, Table: tt.table,
				Now: func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }})
			if len(a.Unsure) != len(tt.unsure) {
				t.Fatalf("unsure = %q\nwant      %q", a.Unsure, tt.unsure)
			}
			for i, u := range a.Unsure {
				if !strings.Contains(u, tt.unsure[i]) {
					t.Errorf("unsure[%d] = %q\nwant it to contain %q", i, u, tt.unsure[i])
				}
			}
			if len(tt.unsure) == 0 && len(a.Databases[0].Files) != tt.files0 {
				t.Errorf("files of %s = %+v, want %d", a.Databases[0].Name, a.Databases[0].Files, tt.files0)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
			if a.Manifest != "" {
				t.Errorf("manifest %q used", a.Manifest)
			}
		})
	}
}

// manifestFor is the manifest ManifestScript would write for the
// railsAppTree app.
func manifestFor() Manifest {
	return Manifest{
		Format: ManifestFormat, Generator: "migrun", RailsVersion: "6.1.7.10", Environment: "production", Root: "/app",
		Databases: []ManifestDatabase{{
			Name:                  "primary",
			MigrationsPaths:       []ManifestPath{{Configured: "/app/db/migrate", Path: "db/migrate", Directory: true}},
			SchemaMigrationsTable: "app_schema_migrations",
			Migrations: []ManifestMigration{
				{Version: "20240101000000", Name: "CreateUsers", File: "db/migrate/20240101000000_create_users.rb"},
				{Version: "20240102000000", Name: "AddIndexToUsersEmail", File: "db/migrate/20240102000000_add_index_to_users_email.rb"},
			},
		}},
		DynamicSettings: []ManifestNote{},
	}
}

func TestAnalyzeManifest(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name     string
		edit     func(m *Manifest)
		raw      string // the manifest's text instead of edit's
		tree     []string
		app      App
		unsure   []string
		check    func(t *testing.T, a Analysis)
		noWrite  bool
		manifest string
		after    map[string]string // files written after the manifest was
	}{
		{name: "up to date", check: func(t *testing.T, a Analysis) {
			db := a.Databases[0]
			if db.Table != "app_schema_migrations" || len(db.Files) != 2 || db.Files[1].Name != "AddIndexToUsersEmail" || a.RailsVersion != "6.1.7.10" {
				t.Errorf("analysis %+v", a)
			}
		}},
		{
			name: "search path settings carried",
			edit: func(m *Manifest) {
				m.Databases[0].SchemaSearchPath = str("app,public")
				m.Databases[0].SearchPathVariable = str("zoo")
			},
			check: func(t *testing.T, a Analysis) {
				if db := a.Databases[0]; db.SearchPath != "app,public" || db.SearchPathVariable != "zoo" {
					t.Errorf("database %+v", db)
				}
			},
		},
		{name: "acronym names Rails validated are trusted", edit: func(m *Manifest) { m.Databases[0].Migrations[1].Name = "AddIndexToUSERSEmail" }},
		{name: "another environment", app: App{Environment: "staging"}, unsure: []string{"was written for RAILS_ENV=production, this is staging"}},
		{name: "a file added since", tree: []string{"f db/migrate/20240103000000_add_flag.rb"}, unsure: []string{"db/migrate/20240103000000_add_flag.rb is not in the manifest"}},
		{name: "an illegal file added since", tree: []string{"f db/migrate/20240103000000-add_flag.rb"}, unsure: []string{"db/migrate/20240103000000-add_flag.rb is not in the manifest"}},
		{
			name: "a file removed since",
			edit: func(m *Manifest) {
				m.Databases[0].Migrations = append(m.Databases[0].Migrations, ManifestMigration{Version: "20240103000000", Name: "AddFlag", File: "db/migrate/20240103000000_add_flag.rb"})
			},
			unsure: []string{"db/migrate/20240103000000_add_flag.rb is in the manifest but not found"},
		},
		{
			name: "a file renamed since",
			edit: func(m *Manifest) {
				m.Databases[0].Migrations[1] = ManifestMigration{Version: "20240102000000", Name: "AddIndex", File: "db/migrate/20240102000000_add_index.rb"}
			},
			unsure: []string{"db/migrate/20240102000000_add_index.rb is now db/migrate/20240102000000_add_index_to_users_email.rb"},
		},
		{
			name: "a path gone since",
			edit: func(m *Manifest) {
				m.Databases[0].MigrationsPaths = append(m.Databases[0].MigrationsPaths, ManifestPath{Configured: "db/more", Path: "db/more", Directory: true})
			},
			unsure: []string{"migrations path db/more of database primary was a directory when the manifest was written and is not a directory now"},
		},
		{
			name: "ERB in database.yml",
			edit: func(m *Manifest) {
				m.DynamicSettings = []ManifestNote{{File: "config/database.yml", Line: 7, Setting: "erb"}, {File: "config/database.yml", Line: 9, Setting: "schema_search_path"}}
			},
			unsure: []string{"config/database.yml:7: ERB may give Rails other databases"},
			check: func(t *testing.T, a Analysis) {
				if !strings.Contains(a.Databases[0].SearchPathFromURL, "config/database.yml:9 sets schema_search_path through ERB") {
					t.Errorf("SearchPathFromURL %q", a.Databases[0].SearchPathFromURL)
				}
			},
		},
		{name: "explicit paths that agree", app: App{Databases: []DatabasePaths{{"primary", []string{"./db/migrate/"}}}}},
		{name: "explicit paths that differ", app: App{Databases: []DatabasePaths{{"primary", []string{"db/other"}}}}, unsure: []string{"the manifest (Rails) has migrations paths db/migrate, migrun's settings db/other"}},
		{name: "a table name that differs", app: App{Table: TableName{Prefix: "x_", PrefixSet: true}}, unsure: []string{`Rails names database primary's schema_migrations "app_schema_migrations", migrun's settings "x_schema_migrations"`}},
		{name: "no migration at all", edit: func(m *Manifest) { m.Databases[0].Migrations = nil }, tree: []string{}, unsure: []string{"db/migrate/20240101000000_create_users.rb is not in the manifest", "db/migrate/20240102000000_add_index_to_users_email.rb is not in the manifest", "lists no migration at all"}},
		{name: "not JSON", raw: "{", unsure: []string{"not a migrun manifest"}},
		{name: "unknown fields", raw: `{"format": 1, "extra": true}`, unsure: []string{`unknown field "extra"`}},
		{name: "another format", edit: func(m *Manifest) { m.Format = 2 }, unsure: []string{"manifest format 2, this migrun reads format 1"}},
		{name: "an inconsistent migration", edit: func(m *Manifest) { m.Databases[0].Migrations[0].Version = "1" }, unsure: []string{`version "1", but the file name says 20240101000000`}},
		{name: "a named manifest that is missing", noWrite: true, manifest: "elsewhere.json", unsure: []string{"elsewhere.json: not found"}},
		{name: "a table name prefix added since", after: map[string]string{"config/application.rb": "config.active_record.table_name_prefix = 'app_'\n"},
			unsure: []string{"the app's configuration differs from when it was written (config/application.rb changed)"}},
		{name: "an initializer and an engine added since", after: map[string]string{"config/initializers/paths.rb": "x = 1\n", "Gemfile": "gem 'engine', path: 'engines/engine'\n"},
			unsure: []string{"(Gemfile is new, config/initializers/paths.rb is new)"}},
		{name: "written without config_files", edit: func(m *Manifest) { m.ConfigFiles = nil }, unsure: []string{"manifest without config_files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, railsAppTree...)
			makeTree(t, root, tt.tree...)
			if !tt.noWrite {
				data := []byte(tt.raw)
				if tt.raw == "" {
					m := manifestFor()
					var err error
					if m.ConfigFiles, err = ConfigFingerprint(root, "production"); err != nil {
						t.Fatal(err)
					}
					if tt.edit != nil {
						tt.edit(&m)
					}
					if data, err = json.Marshal(m); err != nil {
						t.Fatal(err)
					}
				}
				writeFiles(t, root, map[string]string{DefaultManifest: string(data)})
			}
			writeFiles(t, root, tt.after)
			app := tt.app
			app.Root = root
			app.Manifest = tt.manifest
			if app.Environment == "" {
				app.Environment = "production"
			}
			a := Analyze(app)
			if len(a.Unsure) != len(tt.unsure) {
				t.Fatalf("unsure = %q\nwant      %q", a.Unsure, tt.unsure)
			}
			for i, u := range a.Unsure {
				if !strings.Contains(u, tt.unsure[i]) {
					t.Errorf("unsure[%d] = %q\nwant it to contain %q", i, u, tt.unsure[i])
				}
			}
			if a.Manifest == "" {
				t.Error("no manifest used")
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}
