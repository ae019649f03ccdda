package pending

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/rails"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// appExec runs statements as the app's user (who must be able to read
// what they create), one by one.
func appExec(t *testing.T, rawURL string, statements ...string) {
	t.Helper()
	u, err := dburl.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if u.Adapter == dburl.PostgreSQL {
		cfg, err := dbconn.PostgresConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, s := range statements {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		return
	}
	cfg, err := dbconn.MySQLConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	for _, s := range statements {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// schemaMigrations creates a table as Rails does (a string version
// column) holding versions, spelled as given.
func schemaMigrations(table string, versions ...string) []string {
	stmts := []string{fmt.Sprintf("CREATE TABLE %s (version varchar(255) NOT NULL PRIMARY KEY)", table)}
	for _, v := range versions {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (version) VALUES ('%s')", table, v))
	}
	return stmts
}

var appFiles = map[string]string{
	"db/migrate/20240101000000_create_users.rb":             "",
	"db/migrate/20240102000000_add_index_to_users_email.rb": "",
}

// check opens a gate on root for one primary database at url and checks once.
func check(t *testing.T, root, url string, edit func(*Config)) (Verdict, error) {
	t.Helper()
	cfg := Config{
		Root:           root,
		Environment:    "production",
		ConnectTimeout: 10 * time.Second,
		URLFor: func(name string) (*dburl.URL, error) {
			if name != "primary" {
				return nil, fmt.Errorf("no URL for %s", name)
			}
			return dburl.Parse(url)
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return g.Check(ctx)
}

func versionsOf(v Verdict) string {
	var s []string
	for _, m := range v.Pending {
		s = append(s, m.Version)
	}
	return strings.Join(s, ",")
}

// TestCheckAgainstServers runs the same cases on PostgreSQL and MariaDB.
func TestCheckAgainstServers(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(kind string) []string
		files   map[string]string
		edit    func(*Config)
		pending string // versions pending, comma-separated
	}{
		{name: "no schema_migrations: everything pending", setup: func(string) []string { return nil }, pending: "20240101000000,20240102000000"},
		{name: "one applied", setup: func(string) []string { return schemaMigrations("schema_migrations", "20240101000000") }, pending: "20240102000000"},
		{
			name: "versions spelled oddly, as Ruby's to_i reads them",
			setup: func(string) []string {
				return schemaMigrations("schema_migrations", " 020240101000000", "2024_0102_000000", "20240103000000abc", "-1", "0x10")
			},
		},
		{
			name:  "prefixed and suffixed table",
			files: map[string]string{"config/initializers/names.rb": "ActiveRecord::Base.table_name_prefix = 'app_'\nActiveRecord::Base.table_name_suffix = '_v1'\n"},
			setup: func(string) []string {
				return append(schemaMigrations("app_schema_migrations_v1", "20240101000000", "20240102000000"), schemaMigrations("schema_migrations")...)
			},
			edit: func(c *Config) {
				c.Table = TableName{Prefix: "app_", PrefixSet: true, Suffix: "_v1", SuffixSet: true}
			},
		},
		{
			name: "a custom table name, nothing in it",
			setup: func(string) []string {
				return schemaMigrations("schema_migrations", "20240101000000", "20240102000000")
			},
			edit: func(c *Config) {
				c.Table = TableName{Name: "migrations", NameSet: true}
			},
			pending: "20240101000000,20240102000000",
		},
	}
	for kind, srv := range map[string]*testdb.Server{"postgresql": testdb.Postgres(t), "mariadb": testdb.MariaDB(t)} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			for _, tt := range cases {
				t.Run(tt.name, func(t *testing.T) {
					_, url := srv.CreateDatabase(t)
					if stmts := tt.setup(kind); len(stmts) > 0 {
						appExec(t, url, stmts...)
					}
					files := maps.Clone(appFiles)
					maps.Copy(files, tt.files)
					v, err := check(t, appTree(t, files), url, tt.edit)
					if err != nil {
						t.Fatal(err)
					}
					if len(v.Unsure) > 0 || versionsOf(v) != tt.pending {
						t.Errorf("verdict %+v, want pending %q", v, tt.pending)
					}
					if tt.pending == "" != v.Current() {
						t.Errorf("Current() = %v", v.Current())
					}
				})
			}
		})
	}
}

func TestCheckPendingDetails(t *testing.T) {
	srv := testdb.Postgres(t)
	_, url := srv.CreateDatabase(t)
	appExec(t, url, schemaMigrations("schema_migrations", "20240101000000")...)
	v, err := check(t, appTree(t, maps.Clone(appFiles)), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Migration{{Database: "primary", Version: "20240102000000", Name: "AddIndexToUsersEmail", Path: "db/migrate/20240102000000_add_index_to_users_email.rb"}}
	if fmt.Sprint(v.Pending) != fmt.Sprint(want) {
		t.Errorf("pending %+v, want %+v", v.Pending, want)
	}
}

// TestSearchPathIsRails checks that set_config reads a search path as
// Rails' `SET search_path TO <value>` does.
func TestSearchPathIsRails(t *testing.T) {
	srv := testdb.Postgres(t)
	_, url := srv.CreateDatabase(t)
	appExec(t, url, `CREATE SCHEMA app`, `CREATE SCHEMA "App"`, `CREATE SCHEMA "my schema"`)
	u, err := dburl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dbconn.PostgresConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schemas := func() string {
		var s []string
		if err := conn.QueryRow(ctx, "SELECT current_schemas(false)").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return strings.Join(s, ",")
	}
	for _, value := range []string{`app`, `App`, `"App"`, `app, public`, `"$user", public`, `app,missing`, `"my schema",app`, `APP ,  "App"`} {
		if _, err := conn.Exec(ctx, "SET search_path TO "+value); err != nil {
			t.Fatalf("SET search_path TO %s: %v", value, err)
		}
		bySet := schemas()
		if _, err := conn.Exec(ctx, "RESET search_path"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT set_config('search_path', $1, false)", value); err != nil {
			t.Fatalf("set_config %s: %v", value, err)
		}
		if byConfig := schemas(); byConfig != bySet {
			t.Errorf("%s: SET gives %s, set_config %s", value, bySet, byConfig)
		}
		if _, err := conn.Exec(ctx, "RESET search_path"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckSearchPath(t *testing.T) {
	srv := testdb.Postgres(t)
	dbName, url := srv.CreateDatabase(t)
	// Rails' tables in schema app; public has a stale schema_migrations.
	appExec(t, url, append(append([]string{"CREATE SCHEMA app"},
		schemaMigrations("app.schema_migrations", "20240101000000", "20240102000000")...),
		schemaMigrations("public.schema_migrations")...)...)
	bouncer := srv.PgBouncer(t, "transaction", 2)
	pooled := bouncer.URL(dbName)
	withYML := map[string]string{"config/database.yml": "production:\n  adapter: postgresql\n  schema_search_path: app\n"}
	manifest := func(searchPath string) map[string]string {
		m := rails.Manifest{
			Format: rails.ManifestFormat, Generator: "migrun", RailsVersion: "6.1.7.10", Environment: "production", ConfigFiles: map[string]string{"config/application.rb": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}, // appTree writes it empty
			Databases: []rails.ManifestDatabase{{
				Name: "primary", SchemaMigrationsTable: "schema_migrations", SchemaSearchPath: &searchPath,
				MigrationsPaths: []rails.ManifestPath{{Configured: "db/migrate", Path: "db/migrate", Directory: true}},
				Migrations: []rails.ManifestMigration{
					{Version: "20240101000000", Name: "CreateUsers", File: "db/migrate/20240101000000_create_users.rb"},
					{Version: "20240102000000", Name: "AddIndexToUsersEmail", File: "db/migrate/20240102000000_add_index_to_users_email.rb"},
				},
			}},
		}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{rails.DefaultManifest: string(data)}
	}
	tests := []struct {
		name    string
		url     string
		files   map[string]string
		pending string
		unsure  string
	}{
		{name: "the server's default: public", url: url, pending: "20240101000000,20240102000000"},
		{name: "the URL's schema_search_path", url: url + "?schema_search_path=app,public"},
		{name: "the URL's, upper case as SET reads it", url: url + "?schema_search_path=App"},
		{name: "through PgBouncer's transaction pooling", url: pooled + "?schema_search_path=app"},
		{name: "through PgBouncer, then without: the pooled connection kept nothing", url: pooled, pending: "20240101000000,20240102000000"},
		{name: "database.yml sets it, the URL does not", url: url, files: withYML, unsure: "config/database.yml:3 sets schema_search_path"},
		{name: "database.yml sets it, the URL too", url: url + "?schema_search_path=app", files: withYML},
		{name: "the manifest's", url: url, files: manifest("app")},
		{name: "the manifest's, overridden by the URL", url: url + "?schema_search_path=public", files: manifest("app"), pending: "20240101000000,20240102000000"},
		{name: "a schema that does not exist: nothing applied", url: url + "?schema_search_path=nowhere", pending: "20240101000000,20240102000000"},
		{name: "a dotted table name", url: url, files: map[string]string{"config/initializers/t.rb": "ActiveRecord::Base.schema_migrations_table_name = 'app.schema_migrations'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := maps.Clone(appFiles)
			maps.Copy(files, tt.files)
			v, err := check(t, appTree(t, files), tt.url, func(c *Config) {
				if strings.Contains(tt.name, "dotted") {
					c.Table = TableName{Name: "app.schema_migrations", NameSet: true}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(v.Unsure, "; ")
			if versionsOf(v) != tt.pending || (tt.unsure == "") != (got == "") || !strings.Contains(got, tt.unsure) {
				t.Errorf("verdict %+v\nwant pending %q, unsure %q", v, tt.pending, tt.unsure)
			}
		})
	}
}

func TestCheckMySQLOtherDatabase(t *testing.T) {
	srv := testdb.MariaDB(t)
	_, url := srv.CreateDatabase(t)
	other, _ := srv.CreateDatabase(t)
	appExec(t, url, schemaMigrations(other+".schema_migrations", "20240101000000", "20240102000000")...)
	files := maps.Clone(appFiles)
	files["config/application.rb"] = "config.active_record.schema_migrations_table_name = '" + other + ".schema_migrations'\n"
	v, err := check(t, appTree(t, files), url, func(c *Config) {
		c.Table = TableName{Name: other + ".schema_migrations", NameSet: true}
	})
	if err != nil || !v.Current() {
		t.Errorf("verdict %+v, %v", v, err)
	}
}

func TestCheckUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, scheme := range []string{"postgres", "mysql2"} {
		_, err := check(t, appTree(t, maps.Clone(appFiles)), scheme+"://u:secret@"+addr+"/app", func(c *Config) {
			c.ConnectTimeout = 300 * time.Millisecond
		})
		if !errors.Is(err, dbconn.ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", scheme, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// TestGateReconnects checks that one gate keeps working across a
// server restart, and across checks whose files change.
func TestGateReconnects(t *testing.T) {
	srv := testdb.NewPostgres(t)
	_, url := srv.CreateDatabase(t)
	appExec(t, url, schemaMigrations("schema_migrations", "20240101000000", "20240102000000")...)
	root := appTree(t, maps.Clone(appFiles))
	g, err := Open(Config{Root: root, Environment: "production", ConnectTimeout: 20 * time.Second,
		URLFor: func(string) (*dburl.URL, error) { return dburl.Parse(url) }})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if v, err := g.Check(ctx); err != nil || !v.Current() {
		t.Fatalf("first check: %+v, %v", v, err)
	}
	srv.Stop(t)
	srv.Start(t)
	// The kept connection died with the server: the check reconnects.
	v, err := g.Check(ctx)
	if err != nil || !v.Current() {
		t.Fatalf("after a restart: %+v, %v", v, err)
	}
	appTreeAdd(t, root, "db/migrate/20240103000000_add_flag.rb")
	if v, err := g.Check(ctx); err != nil || versionsOf(v) != "20240103000000" {
		t.Fatalf("after a new file: %+v, %v", v, err)
	}
}

// TestSearchPathReadLeavesNoOpenTransaction: a read under Rails' search
// path never leaves a transaction open while the server waits for migrun
// (a wait whose network dropped right then would keep it open, and an
// index built concurrently meanwhile would wait for it). The server is
// watched while reads follow each other without a pause.
func TestSearchPathReadLeavesNoOpenTransaction(t *testing.T) {
	srv := testdb.Postgres(t)
	db, url := srv.CreateDatabase(t)
	appExec(t, url, schemaMigrations("schema_migrations", "20240101000000")...)
	u, err := dburl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	s := &source{name: "primary", url: u, connectTimeout: 10 * time.Second, log: slog.New(slog.DiscardHandler)}
	defer s.close()
	q := query{table: "schema_migrations", searchPath: "public", setPath: true}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if v, err := s.versions(ctx, q); err != nil || len(v) != 1 {
		t.Fatalf("versions = %v, %v", v, err)
	}
	stop := make(chan struct{})
	reads := make(chan int, 1)
	go func() {
		n := 0
		defer func() { reads <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.versions(ctx, q); err != nil {
				t.Error(err)
				return
			}
			n++
		}
	}()
	open := 0
	for range 500 {
		open += int(srv.QueryInt(t, db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrun-wait' AND state LIKE 'idle in transaction%'"))
	}
	close(stop)
	if n := <-reads; n < 100 {
		t.Fatalf("only %d reads while the server was watched", n)
	}
	if open > 0 {
		t.Errorf("the read's session was seen idle in a transaction %d times", open)
	}
}
