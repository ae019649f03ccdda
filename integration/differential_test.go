package integration

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/railsapp"
	"github.com/migrun/migrun/internal/testdb"
)

// TestDifferentialGate is the oracle for migrun's gate (`migrun wait` and
// `run --skip-if-current`): on each app layout and database state it asks
// migrun and then Rails itself (`rails db:abort_if_pending_migrations`).
//
// The invariant: migrun never opens the gate (wait exits 0, or run skips
// its command) where Rails would migrate or refuse. A row that breaks it
// fails, naming both verdicts. Rows where migrun keeps the gate shut while
// Rails says current are allowed; they are logged with migrun's reason.
//
// Set MIGRUN_DIFFTEST_TABLE to a file name to get every row as a markdown table.
func TestDifferentialGate(t *testing.T) {
	t.Parallel()
	started := time.Now()
	srvs := servers(t)
	bin := publicCopy(t, migrunBin)
	preload := startRailsPreloader(t, railsapp.Template(t))
	t.Logf("servers and app ready after %s", time.Since(started).Round(time.Millisecond))

	var (
		mu      sync.Mutex
		results []diffResult
		wg      sync.WaitGroup
	)
	// Rows mostly wait: on Ruby booting (CPU) and on wait's one-second
	// timeout (idle). More rows than cores keeps both busy.
	slots := make(chan struct{}, 3*runtime.NumCPU())
	for i, l := range diffLayouts {
		for _, kind := range []string{testdb.KindPostgreSQL, testdb.KindMariaDB} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				res := diffResult{order: i, layout: l, kind: kind}
				t.Run(l.name+"/"+kind, func(t *testing.T) {
					res.ran = true
					if l.servers == postgresOnly && kind != testdb.KindPostgreSQL {
						res.skipped = "PostgreSQL only"
						t.Skip(res.skipped)
					}
					runDiffRow(t, l, srvs[kind], bin, preload, &res)
				})
				if res.ran {
					mu.Lock()
					results = append(results, res)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()

	table := diffTable(results)
	var allowed []string
	for _, res := range results {
		if res.allowed {
			allowed = append(allowed, fmt.Sprintf("%s/%s: %s", res.layout.name, res.kind, res.shutReason()))
		}
	}
	t.Logf("allowed disagreements, migrun keeps the gate shut where Rails says current (%d):\n%s", len(allowed), strings.Join(allowed, "\n"))
	t.Logf("%d layouts, %d rows in %s; CPU of the rows' processes: %s\n%s",
		len(diffLayouts), len(results), time.Since(started).Round(time.Second), &childCPU, table)
	if path := os.Getenv("MIGRUN_DIFFTEST_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// diffLayout is one app layout and database state.
type diffLayout struct {
	name    string
	rails   string // what Rails says on it: a check that the fixture is what it claims
	servers diffServers
	setup   func(r *diffRow)
}

// diffServers says which servers a layout means something on.
type diffServers int

const (
	bothServers  diffServers = iota
	postgresOnly             // schema search paths
)

// diffResult is what one row found.
type diffResult struct {
	order              int
	layout             diffLayout
	kind               string
	ran                bool
	settings           []string // the MIGRUN_ settings the row gave migrun
	skipped            string
	rails, wait, skip  diffVerdict
	notes              []string
	forbidden, allowed bool
}

func runDiffRow(t *testing.T, l diffLayout, srv *testdb.Server, bin string, preload *railsPreloader, res *diffResult) {
	r := newDiffRow(t, srv, bin, preload)
	l.setup(r)
	// migrun first: Rails creates schema_migrations when it is missing.
	res.wait = r.waitVerdict("1s")
	res.skip = r.skipVerdict()
	if res.wait.label == "waits" && res.skip.open {
		// On a loaded machine wait's first check may not finish within a
		// second; run's check has the connect timeout.
		r.note("wait re-run with 30s: it timed out at 1s where run found nothing pending")
		res.wait = r.waitVerdict("30s")
	}
	res.rails = r.railsVerdict()
	for k := range r.env {
		if strings.HasPrefix(k, "MIGRUN_") {
			res.settings = append(res.settings, k)
		}
	}
	slices.Sort(res.settings)
	res.notes = r.notes

	if res.rails.label != l.rails {
		t.Errorf("fixture: Rails says %s (%s) where the layout expects %s", res.rails.label, res.rails.detail, l.rails)
	}
	for _, v := range []struct {
		name string
		diffVerdict
	}{{"wait", res.wait}, {"run --skip-if-current", res.skip}} {
		switch {
		case v.open && res.rails.label != railsCurrent:
			res.forbidden = true
			t.Errorf("FORBIDDEN: migrun %s opens the gate (%s) where Rails says %s (%s)\nnotes: %s\nmigrun's stderr:\n%s",
				v.name, v.label, res.rails.label, res.rails.detail, strings.Join(r.notes, "; "), v.stderr)
		case !v.open && res.rails.label == railsCurrent:
			res.allowed = true
			t.Logf("allowed: migrun %s keeps the gate shut (%s) where Rails says current; migrun: %s", v.name, v.label, v.detail)
		}
	}
}

// The layouts. Each states what Rails says on it; the state is chosen to
// tempt a gate that reads the app differently from Rails into opening:
// what only Rails sees is left pending, what only a lenient reader would
// accept is recorded as applied.
var diffLayouts = []diffLayout{
	// --- baselines ---
	{"baseline/fresh-database", railsPending, bothServers, func(r *diffRow) {}},
	{"baseline/migrated-by-rails", railsCurrent, bothServers, func(r *diffRow) { r.migrate() }},
	{"baseline/new-file-after-migrate", railsPending, bothServers, func(r *diffRow) {
		r.migrate()
		r.migration("db/migrate/20240301000000_add_name_to_users.rb")
	}},
	{"baseline/applied-by-insert", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"baseline/extra-applied-without-file", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20230101000000", "20990101000000")
	}},
	{"baseline/older-file-than-applied", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20230601000000_backfill_users.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},

	// --- file names ---
	{"name/dash-in-name", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add-name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/dash-after-digits", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000-add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/dash-no-underscore", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000-addname.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/capitals", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_AddName.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/extra-dot", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.v2.final.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/letter-after-digits", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000a_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/upper-case-RB", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.RB")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/no-underscore", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/empty-name", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/scoped-pending", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_create_dogs.animals.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/scoped-applied", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_create_dogs.animals.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/leading-zeros", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/0020240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/very-long-version", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/202403010000001234567890_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "202403010000001234567890")
	}},
	{"name/very-long-version-prefix-applied", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/202403010000001234567890_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/version-past-uint64", railsPending, bothServers, func(r *diffRow) {
		// 2^64+1: a reader that wraps at 64 bits takes it for 1.
		r.migration("db/migrate/18446744073709551617_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "1")
	}},
	{"name/non-ascii", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_ajouter_café.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"name/backup-files", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb~")
		r.migration("db/migrate/20240301000000_add_name.rb.orig")
		r.write("db/migrate/.keep", "")
		r.write("db/migrate/README.md", "migrations\n")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"name/version-zero", railsPending, bothServers, func(r *diffRow) {
		// Older than everything applied: a gate that compares the newest
		// versions only would miss it.
		r.migration("db/migrate/00000000000000_initial.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},

	// --- directory shapes ---
	{"dir/nested-subdirectories", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/2024/03/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"dir/hidden-directory", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/.archive/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"dir/hidden-directory-nested", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/old/.trash/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"dir/configmap-mount-current", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.configMap()
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"dir/configmap-mount-pending", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.configMap()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"dir/directory-named-like-migration", railsPending, bothServers, func(r *diffRow) {
		r.mkdir("db/migrate/20240301000000_archive.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"dir/empty-db-migrate-applied", railsCurrent, bothServers, func(r *diffRow) {
		r.remove("db/migrate")
		r.mkdir("db/migrate")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"dir/no-db-migrate", railsCurrent, bothServers, func(r *diffRow) {
		r.remove("db/migrate")
	}},
	{"dir/wrong-working-directory-root", railsPending, bothServers, func(r *diffRow) {
		r.migrunDir = "/"
	}},
	{"dir/wrong-working-directory-with-setting", railsPending, bothServers, func(r *diffRow) {
		r.migrunDir = "/"
		r.env["MIGRUN_MIGRATIONS_PATHS"] = r.path("db/migrate")
		r.applied("primary", "schema_migrations", usersVersion)
	}},

	// --- symlinks ---
	{"symlink/db-migrate-is-a-symlink", railsPending, bothServers, func(r *diffRow) {
		r.rename("db/migrate", "shared/migrate")
		r.symlink("../shared/migrate", "db/migrate")
		r.migration("shared/migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/db-migrate-is-a-symlink-current", railsCurrent, bothServers, func(r *diffRow) {
		r.rename("db/migrate", "shared/migrate")
		r.symlink("../shared/migrate", "db/migrate")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/db-is-a-symlink", railsPending, bothServers, func(r *diffRow) {
		r.rename("db", "shared/db")
		r.symlink("shared/db", "db")
		r.migration("shared/db/migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/subdirectory", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("extra_migrations/20240301000000_add_name.rb")
		r.symlink("../../extra_migrations", "db/migrate/extra")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/file", railsPending, bothServers, func(r *diffRow) {
		r.migration("shared/add_name.rb")
		r.symlink("../../shared/add_name.rb", "db/migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/broken", railsPending, bothServers, func(r *diffRow) {
		r.symlink("../../shared/gone.rb", "db/migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/loop", railsCurrent, bothServers, func(r *diffRow) {
		r.symlink(".", "db/migrate/loop")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"symlink/directory-link-named-like-migration", railsPending, bothServers, func(r *diffRow) {
		r.mkdir("shared/archive")
		r.symlink("../../shared/archive", "db/migrate/20240301000000_archive.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},

	// --- permissions: migrun and Rails run as nobody ---
	{"perm/unprivileged-baseline", railsCurrent, bothServers, func(r *diffRow) {
		r.openToAll()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"perm/unreadable-subdirectory", railsCurrent, bothServers, func(r *diffRow) {
		r.migration("db/migrate/locked/20240301000000_add_name.rb")
		r.openToAll()
		r.chmod("db/migrate/locked", 0o311)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"perm/unreadable-file", railsPending, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.openToAll()
		r.chmod("db/migrate/20240301000000_add_name.rb", 0)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"perm/unlistable-db-migrate", railsCurrent, bothServers, func(r *diffRow) {
		r.openToAll()
		r.chmod("db/migrate", 0o311)
	}},

	// --- table names ---
	{"table/prefix-migrated", railsCurrent, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_prefix = "app_"`)
		r.migrate()
	}},
	{"table/prefix-stale-unprefixed-table", railsPending, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_prefix = "app_"`)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"table/prefix-stale-unprefixed-table-with-setting", railsPending, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_prefix = "app_"`)
		r.env["MIGRUN_TABLE_NAME_PREFIX"] = "app_"
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"table/prefix-migrated-with-setting", railsCurrent, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_prefix = "app_"`)
		r.env["MIGRUN_TABLE_NAME_PREFIX"] = "app_"
		r.migrate()
	}},
	{"table/suffix-stale-unsuffixed-table", railsPending, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_suffix = "_v2"`)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"table/suffix-with-setting", railsCurrent, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_suffix = "_v2"`)
		r.env["MIGRUN_TABLE_NAME_SUFFIX"] = "_v2"
		r.applied("primary", "schema_migrations_v2", appVersions...)
	}},
	{"table/name-stale-default-table", railsPending, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.schema_migrations_table_name = "migrations_log"`)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"table/name-with-setting-pending", railsPending, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.schema_migrations_table_name = "migrations_log"`)
		r.env["MIGRUN_SCHEMA_MIGRATIONS_TABLE_NAME"] = "migrations_log"
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.applied("primary", "migrations_log", appVersions...)
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"table/prefix-name-suffix-with-settings", railsCurrent, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_prefix = "app_"`,
			`config.active_record.schema_migrations_table_name = "log"`,
			`config.active_record.table_name_suffix = "_v2"`)
		r.env["MIGRUN_TABLE_NAME_PREFIX"] = "app_"
		r.env["MIGRUN_SCHEMA_MIGRATIONS_TABLE_NAME"] = "log"
		r.env["MIGRUN_TABLE_NAME_SUFFIX"] = "_v2"
		r.applied("primary", "app_log_v2", appVersions...)
	}},

	// --- PostgreSQL search paths ---
	{"search-path/yml-migrated", railsCurrent, postgresOnly, func(r *diffRow) {
		r.fixture("search-path.database.yml", "config/database.yml")
		r.exec("primary", "CREATE SCHEMA app")
		r.migrate()
	}},
	{"search-path/yml-stale-public-table", railsPending, postgresOnly, func(r *diffRow) {
		r.fixture("search-path.database.yml", "config/database.yml")
		r.exec("primary", "CREATE SCHEMA app")
		r.applied("primary", "public.schema_migrations", appVersions...)
	}},
	{"search-path/url-query-stale-public-table", railsPending, postgresOnly, func(r *diffRow) {
		r.env["DATABASE_URL"] += "?schema_search_path=app"
		r.exec("primary", "CREATE SCHEMA app")
		r.applied("primary", "public.schema_migrations", appVersions...)
	}},
	{"search-path/url-query-current", railsCurrent, postgresOnly, func(r *diffRow) {
		r.env["DATABASE_URL"] += "?schema_search_path=app"
		r.exec("primary", "CREATE SCHEMA app")
		r.applied("primary", "app.schema_migrations", appVersions...)
	}},
	{"search-path/table-in-another-schema-only", railsPending, postgresOnly, func(r *diffRow) {
		r.exec("primary", "CREATE SCHEMA legacy")
		r.applied("primary", "legacy.schema_migrations", appVersions...)
	}},
	{"search-path/first-schema-lacks-table", railsCurrent, postgresOnly, func(r *diffRow) {
		r.fixture("search-path-two.database.yml", "config/database.yml")
		r.exec("primary", "CREATE SCHEMA app")
		r.applied("primary", "public.schema_migrations", appVersions...)
	}},
	{"search-path/database-default", railsCurrent, postgresOnly, func(r *diffRow) {
		r.exec("primary", "CREATE SCHEMA app")
		r.srv.Exec(r.t, "", fmt.Sprintf("ALTER DATABASE %s SET search_path = app", r.dbs["primary"]))
		r.applied("primary", "app.schema_migrations", appVersions...)
	}},

	// --- several databases ---
	{"multi/animals-pending", railsPending, bothServers, func(r *diffRow) {
		multiApp(r)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"multi/animals-pending-with-setting", railsPending, bothServers, func(r *diffRow) {
		multiApp(r)
		r.env["MIGRUN_DATABASES"] = "primary:db/migrate,animals:db/animals_migrate"
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"multi/current", railsCurrent, bothServers, func(r *diffRow) {
		multiApp(r)
		r.applied("primary", "schema_migrations", appVersions...)
		r.applied("animals", "schema_migrations", "20240105000000")
	}},
	{"multi/migrated-by-rails-with-setting", railsCurrent, bothServers, func(r *diffRow) {
		multiApp(r)
		r.env["MIGRUN_DATABASES"] = "primary:db/migrate,animals:db/animals_migrate"
		r.migrate()
	}},
	{"multi/primary-own-migrations-path", railsPending, bothServers, func(r *diffRow) {
		multiApp(r)
		r.fixture("primary-paths.database.yml", "config/database.yml")
		r.migration("db/primary_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
		r.applied("animals", "schema_migrations", "20240105000000")
	}},

	// --- migrations_paths of one database ---
	{"paths/custom-in-yml", railsPending, bothServers, func(r *diffRow) {
		r.fixture("custom-path.database.yml", "config/database.yml")
		r.migration("db/custom_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/custom-in-yml-with-setting", railsPending, bothServers, func(r *diffRow) {
		r.fixture("custom-path.database.yml", "config/database.yml")
		r.env["MIGRUN_MIGRATIONS_PATHS"] = "db/custom_migrate"
		r.migration("db/custom_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/two-in-yml", railsPending, bothServers, func(r *diffRow) {
		r.fixture("paths-list.database.yml", "config/database.yml")
		r.migration("db/extra_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/two-in-yml-with-setting", railsPending, bothServers, func(r *diffRow) {
		r.fixture("paths-list.database.yml", "config/database.yml")
		r.env["MIGRUN_MIGRATIONS_PATHS"] = "db/migrate,db/extra_migrate"
		r.migration("db/extra_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/erb-in-yml", railsPending, bothServers, func(r *diffRow) {
		r.fixture("erb-path.database.yml", "config/database.yml")
		r.env["MIGRATIONS_DIR"] = "db/release_migrate"
		r.migration("db/release_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/replaced-in-application-rb", railsPending, bothServers, func(r *diffRow) {
		r.configure(`paths["db/migrate"] = "db/custom_migrate"`)
		r.migration("db/custom_migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/appended-by-initializer", railsPending, bothServers, func(r *diffRow) {
		extraPathInitializer(r)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"paths/appended-by-initializer-with-setting", railsPending, bothServers, func(r *diffRow) {
		extraPathInitializer(r)
		r.env["MIGRUN_MIGRATIONS_PATHS"] = "db/migrate,db/extra_migrate"
		r.applied("primary", "schema_migrations", appVersions...)
	}},

	// --- engines ---
	{"engine/pending", railsPending, bothServers, func(r *diffRow) {
		r.engine()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"engine/pending-with-setting", railsPending, bothServers, func(r *diffRow) {
		r.engine()
		r.env["MIGRUN_MIGRATIONS_PATHS"] = "db/migrate,engines/foo/db/migrate"
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"engine/migrated-by-rails", railsCurrent, bothServers, func(r *diffRow) {
		r.engine()
		r.migrate()
	}},

	// --- duplicates ---
	{"dup/version-in-two-directories", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.migration("db/migrate/sub/20240301000000_add_email.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"dup/version-with-leading-zero", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.migration("db/migrate/020240301000000_add_email.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000")
	}},
	{"dup/name", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.migration("db/migrate/20240302000000_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000", "20240302000000")
	}},
	{"dup/name-other-scope", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.migration("db/migrate/20240302000000_add_name.animals.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000", "20240302000000")
	}},
	{"dup/name-after-camelize", railsRefuses, bothServers, func(r *diffRow) {
		r.migration("db/migrate/20240301000000_add_name_2.rb")
		r.migration("db/migrate/20240302000000_add_name2.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301000000", "20240302000000")
	}},

	// --- versions in schema_migrations, read with Ruby's String#to_i ---
	{"applied/leading-zeros", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", "0"+usersVersion, "00"+indexVersion)
	}},
	{"applied/leading-whitespace", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", " "+usersVersion, "\t"+indexVersion)
	}},
	{"applied/trailing-junk", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", usersVersion+" ", indexVersion+"abc")
	}},
	{"applied/underscores", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", "20240101_000000", "2024_0102_000000")
	}},
	{"applied/underscore-continues-number", railsPending, bothServers, func(r *diffRow) {
		// Ruby reads "20240301_5" as 202403015: migration 20240301 is not applied.
		r.migration("db/migrate/20240301_add_name.rb")
		r.applied("primary", "schema_migrations", usersVersion, indexVersion, "20240301_5")
	}},
	{"applied/double-underscore-stops-number", railsPending, bothServers, func(r *diffRow) {
		// Ruby reads "2024__0101000000" as 2024.
		r.applied("primary", "schema_migrations", "2024__0101000000", indexVersion)
	}},
	{"applied/plus-sign", railsCurrent, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", "+"+usersVersion, "+"+indexVersion)
	}},
	{"applied/minus-sign", railsPending, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", "-"+usersVersion, indexVersion)
	}},
	{"applied/fullwidth-digits", railsPending, bothServers, func(r *diffRow) {
		if r.srv.Kind() == testdb.KindMariaDB { // the server's default, latin1, cannot hold them
			r.exec("primary", "CREATE TABLE schema_migrations (version varchar(255) NOT NULL PRIMARY KEY) DEFAULT CHARSET=utf8mb4")
		}
		r.applied("primary", "schema_migrations", "２０２４０１０１０００００００", indexVersion)
	}},
	{"applied/exponent", railsPending, bothServers, func(r *diffRow) {
		r.applied("primary", "schema_migrations", "2.0240101e13", indexVersion)
	}},

	// --- the manifest (`migrun manifest`, written at build time) ---
	{"manifest/current", railsCurrent, bothServers, func(r *diffRow) {
		r.manifest()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/fresh-database", railsPending, bothServers, func(r *diffRow) {
		r.manifest()
	}},
	{"manifest/stale-new-file", railsPending, bothServers, func(r *diffRow) {
		r.manifest()
		r.migration("db/migrate/20240301000000_add_name.rb")
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/stale-removed-file", railsCurrent, bothServers, func(r *diffRow) {
		r.manifest()
		r.remove("db/migrate/20240102000000_add_index_to_users_email.rb")
		r.applied("primary", "schema_migrations", usersVersion)
	}},
	{"manifest/stale-engine-added", railsPending, bothServers, func(r *diffRow) {
		r.manifest()
		r.engine()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/stale-prefix-added", railsPending, bothServers, func(r *diffRow) {
		r.manifest()
		r.configure(`config.active_record.table_name_prefix = "app_"`)
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/engine-pending", railsPending, bothServers, func(r *diffRow) {
		r.engine()
		r.manifest()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/engine-migrated", railsCurrent, bothServers, func(r *diffRow) {
		r.engine()
		r.manifest()
		r.migrate()
	}},
	{"manifest/initializer-path-pending", railsPending, bothServers, func(r *diffRow) {
		extraPathInitializer(r)
		r.manifest()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/multi-animals-pending", railsPending, bothServers, func(r *diffRow) {
		multiApp(r)
		r.manifest()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/multi-current", railsCurrent, bothServers, func(r *diffRow) {
		multiApp(r)
		r.manifest()
		r.applied("primary", "schema_migrations", appVersions...)
		r.applied("animals", "schema_migrations", "20240105000000")
	}},
	{"manifest/prefix-stale-unprefixed-table", railsPending, bothServers, func(r *diffRow) {
		r.configure(`config.active_record.table_name_prefix = "app_"`)
		r.manifest()
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/search-path-stale-public-table", railsPending, postgresOnly, func(r *diffRow) {
		r.fixture("search-path.database.yml", "config/database.yml")
		r.exec("primary", "CREATE SCHEMA app")
		r.manifest()
		r.applied("primary", "public.schema_migrations", appVersions...)
	}},
	{"manifest/explicit-path", railsPending, bothServers, func(r *diffRow) {
		r.engine()
		r.manifest()
		moved := r.tmp + "/manifest.json"
		if err := os.Rename(r.path(manifestFile), moved); err != nil && !os.IsNotExist(err) {
			r.t.Fatal(err)
		}
		r.env["MIGRUN_MANIFEST"] = moved
		r.applied("primary", "schema_migrations", appVersions...)
	}},
	{"manifest/configured-but-missing", railsPending, bothServers, func(r *diffRow) {
		r.engine()
		r.env["MIGRUN_MANIFEST"] = r.tmp + "/no-such-manifest.json"
		r.applied("primary", "schema_migrations", appVersions...)
	}},
}

// multiApp makes the app a three-tier primary-and-animals app with one
// migration of its own for animals, and the animals database.
func multiApp(r *diffRow) {
	r.fixture("multi.database.yml", "config/database.yml")
	r.migration("db/animals_migrate/20240105000000_create_dogs.rb")
	r.addDatabase("animals")
}

// extraPathInitializer adds db/extra_migrate to the app's migration paths
// from an initializer, with one migration in it.
func extraPathInitializer(r *diffRow) {
	r.write("config/initializers/extra_migrations.rb",
		"Rails.application.config.paths[\"db/migrate\"] << Rails.root.join(\"db/extra_migrate\").to_s\n")
	r.migration("db/extra_migrate/20240301000000_add_name.rb")
}

// shutReason is what migrun said when it kept the gate shut.
func (res diffResult) shutReason() string {
	if res.wait.open {
		return res.skip.detail
	}
	return res.wait.detail
}

// diffTable is every row as a markdown table, in layout order.
func diffTable(results []diffResult) string {
	slices.SortFunc(results, func(a, b diffResult) int {
		if a.order != b.order {
			return a.order - b.order
		}
		return strings.Compare(a.kind, b.kind)
	})
	var b strings.Builder
	b.WriteString("| layout | database | Rails | migrun wait | migrun run --skip-if-current | finding |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	escape := strings.NewReplacer("|", `\|`, "\n", " ").Replace
	for _, res := range results {
		if res.skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | – | – | – | not run: %s |\n", res.layout.name, res.kind, res.skipped)
			continue
		}
		rails := res.rails.label
		if detail, _, _ := strings.Cut(res.rails.detail, ":"); detail != "" {
			rails += " (" + detail + ")"
		}
		var finding string
		switch {
		case res.rails.label == "":
			finding = "row failed before the verdicts"
		case res.forbidden:
			finding = "**FORBIDDEN**: opens where Rails does not"
		case res.allowed:
			finding = "allowed (shut while Rails says current): " + res.shutReason()
		default:
			finding = "agree"
		}
		if len(res.settings) > 0 && finding != "agree" {
			finding += " [despite " + strings.Join(res.settings, ", ") + "]"
		}
		if len(res.notes) > 0 {
			finding += " [" + strings.Join(res.notes, "; ") + "]"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", res.layout.name, res.kind,
			escape(rails), res.wait.label, res.skip.label, escape(finding))
	}
	return b.String()
}
