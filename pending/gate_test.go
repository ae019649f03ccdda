package pending

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/rails"
)

func TestQuotePostgresTable(t *testing.T) {
	// Rails 6.1's own answers: ActiveRecord::ConnectionAdapters::PostgreSQL::Utils
	// .extract_schema_qualified_name(name).quoted.
	for _, tt := range []struct{ name, want string }{
		{"schema_migrations", `"schema_migrations"`},
		{"app_schema_migrations_v1", `"app_schema_migrations_v1"`},
		{"app.schema_migrations", `"app"."schema_migrations"`},
		{`"my.schema".schema_migrations`, `"my.schema"."schema_migrations"`},
		{`"Odd ""name"""`, `"Odd "."name"`},
		{"a.b.c", `"a"."b"`},
		{`a"b`, `"a"."b"`},
		{"Schema_Migrations", `"Schema_Migrations"`},
	} {
		got, err := quotePostgresTable(tt.name)
		if err != nil || got != tt.want {
			t.Errorf("quotePostgresTable(%q) = %s, %v; want %s", tt.name, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", ".", `".`, "a\x00b"} {
		if got, err := quotePostgresTable(bad); err == nil {
			t.Errorf("quotePostgresTable(%q) = %s, want an error", bad, got)
		}
	}
}

// TestQuotePostgresTableMatchesRails asks Rails' own quoting, when Ruby
// and ActiveRecord are installed.
func TestQuotePostgresTableMatchesRails(t *testing.T) {
	names := []string{"schema_migrations", "app.schema_migrations", `"my.schema".schema_migrations`, `"Odd ""name"""`, "a.b.c", `a"b`, "Schema_Migrations", `x"`, `"a"b"c"`}
	var script strings.Builder
	script.WriteString(`require "active_record"; require "active_record/connection_adapters/postgresql/utils"; require "pg"` + "\n")
	for _, n := range names {
		script.WriteString("puts ActiveRecord::ConnectionAdapters::PostgreSQL::Utils.extract_schema_qualified_name(" + rubyString(n) + ").quoted\n")
	}
	out := ruby(t, script.String())
	for i, want := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if got, err := quotePostgresTable(names[i]); err != nil || got != want {
			t.Errorf("quotePostgresTable(%q) = %s, %v; Rails says %s", names[i], got, err, want)
		}
	}
}

func TestQuoteMySQLTable(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"schema_migrations", "`schema_migrations`"},
		{"other.schema_migrations", "`other`.`schema_migrations`"},
		{"we`ird", "`we``ird`"},
	} {
		if got := quoteMySQLTable(tt.name); got != tt.want {
			t.Errorf("quoteMySQLTable(%q) = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestSearchPath(t *testing.T) {
	url := func(raw string) *dburl.URL {
		u, err := dburl.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	plain := url("postgres://h/db")
	tests := []struct {
		name   string
		db     rails.Database
		u      *dburl.URL
		value  string
		set    bool
		unsure string
	}{
		{name: "nothing: the server's default", u: plain},
		{name: "the URL's", u: url("postgres://h/db?schema_search_path=app,public"), value: "app,public", set: true},
		{name: "the URL's schema_order", u: url("postgres://h/db?schema_order=app"), value: "app", set: true},
		{name: "the URL's over the manifest's", db: rails.Database{SearchPath: "yml"}, u: url("postgres://h/db?schema_search_path=url"), value: "url", set: true},
		{name: "the manifest's", db: rails.Database{SearchPath: "yml"}, u: plain, value: "yml", set: true},
		{name: "the variable over all", db: rails.Database{SearchPath: "yml", SearchPathVariable: "var"}, u: url("postgres://h/db?schema_search_path=url"), value: "var", set: true},
		{name: "only the URL can tell, and does", db: rails.Database{SearchPathFromURL: "config/database.yml:3 sets it"}, u: url("postgres://h/db?schema_search_path=%22App%22,public"), value: `"App",public`, set: true},
		{name: "only the URL can tell, and does not", db: rails.Database{SearchPathFromURL: "config/database.yml:3 sets it"}, u: plain, unsure: "config/database.yml:3 sets it"},
		{name: "blank in the URL: Rails drops it", db: rails.Database{SearchPath: "yml"}, u: url("postgres://h/db?schema_search_path=%20"), value: "yml", set: true},
		{name: "SQL in it", u: url("postgres://h/db?schema_search_path=app;%20DROP%20TABLE%20x"), unsure: "cannot tell how PostgreSQL reads"},
		{name: "a string literal", u: url("postgres://h/db?schema_search_path='app'"), unsure: "cannot tell how PostgreSQL reads"},
	}
	for _, tt := range tests {
		value, set, unsure := searchPath(tt.db, tt.u)
		if value != tt.value || set != tt.set || (tt.unsure == "") != (unsure == "") || !strings.Contains(unsure, tt.unsure) {
			t.Errorf("%s: searchPath = %q, %v, %q; want %q, %v, %q", tt.name, value, set, unsure, tt.value, tt.set, tt.unsure)
		}
	}
}

func TestVerdictCurrent(t *testing.T) {
	if !(Verdict{}).Current() {
		t.Error("an empty verdict is current")
	}
	if (Verdict{Unsure: []string{"x"}}).Current() || (Verdict{Pending: []Migration{{}}}).Current() {
		t.Error("pending or unsure is not current")
	}
}

func TestOpenValidates(t *testing.T) {
	if _, err := Open(Config{ConnectTimeout: time.Second}); err == nil {
		t.Error("Open without URLFor")
	}
	if _, err := Open(Config{URLFor: func(string) (*dburl.URL, error) { return nil, nil }}); err == nil {
		t.Error("Open without a connect timeout")
	}
}

// appTree writes a Rails app's files under a temp root: config/application.rb
// and the given files (path → content; "" for an empty file).
func appTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files["config/application.rb"] = ""
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestCheckUnsureWithoutDatabase covers what Check says before it would
// connect: nothing here reaches a server.
func TestCheckUnsureWithoutDatabase(t *testing.T) {
	twoMigrations := map[string]string{"db/migrate/20240101000000_create_users.rb": "", "db/migrate/20240102000000_add_flag.rb": ""}
	urls := map[string]string{"primary": "postgres://127.0.0.1:1/app"}
	tests := []struct {
		name   string
		files  map[string]string
		urls   map[string]string
		cfg    Config
		unsure string
	}{
		{name: "the wrong directory", files: map[string]string{}, unsure: "migrations path db/migrate of database primary is not a directory"},
		{name: "an illegal name", files: map[string]string{"db/migrate/20240103000000-add_flag.rb": ""}, unsure: "IllegalMigrationNameError"},
		{name: "no URL", urls: map[string]string{}, unsure: "database primary: no URL: not set"},
		{name: "sqlite", urls: map[string]string{"primary": "sqlite3:db/production.sqlite3"}, unsure: "not sqlite3"},
		{name: "migrations_paths in the URL", urls: map[string]string{"primary": "postgres://h/db?migrations_paths=db/x"}, unsure: "its URL sets migrations_paths"},
		{name: "schema_search_path in database.yml, not in the URL", files: map[string]string{"config/database.yml": "production:\n  schema_search_path: app\n"}, unsure: "config/database.yml:2 sets schema_search_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			if tt.files == nil || len(tt.files) > 0 {
				for k, v := range twoMigrations {
					files[k] = v
				}
			}
			for k, v := range tt.files {
				files[k] = v
			}
			if tt.urls == nil {
				tt.urls = urls
			}
			cfg := tt.cfg
			cfg.Root = appTree(t, files)
			cfg.Environment = "production"
			cfg.ConnectTimeout = time.Second
			cfg.URLFor = func(name string) (*dburl.URL, error) {
				raw, ok := tt.urls[name]
				if !ok {
					return nil, errors.New("not set")
				}
				return dburl.Parse(raw)
			}
			g, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			v, err := g.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if v.Current() || len(v.Unsure) == 0 || !strings.Contains(strings.Join(v.Unsure, "\n"), tt.unsure) {
				t.Errorf("verdict %+v, want unsure with %q", v, tt.unsure)
			}
		})
	}
}

// appTreeAdd adds empty files to an app tree.
func appTreeAdd(t *testing.T, root string, names ...string) {
	t.Helper()
	for _, name := range names {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
