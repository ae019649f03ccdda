package rails

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The names of migrun's settings, as fixes in messages name them.
const (
	settingDatabases       = "MIGRUN_DATABASES"
	settingMigrationsPaths = "MIGRUN_MIGRATIONS_PATHS"
	settingTablePrefix     = "MIGRUN_TABLE_NAME_PREFIX"
	settingTableSuffix     = "MIGRUN_TABLE_NAME_SUFFIX"
	settingTableName       = "MIGRUN_SCHEMA_MIGRATIONS_TABLE_NAME"
	manifestFix            = "or write a manifest at image build (migrun manifest)"
)

// App is what migrun was told about the app whose migrations it checks.
type App struct {
	Root        string // the directory Rails runs in; "" is the working directory
	Environment string // RAILS_ENV; "" is development
	// Manifest is the manifest's path; "" means Root/db/migrun-manifest.json
	// when that exists. A manifest named here must exist.
	Manifest string
	// Databases, when not nil, are the databases and migrations paths
	// migrun was told (MIGRUN_DATABASES, MIGRUN_MIGRATIONS_PATHS); nil is
	// Rails' default: primary, db/migrate.
	Databases []DatabasePaths
	Table     TableName
	Now       func() time.Time // nil: time.Now
}

// DatabasePaths is a database by its database.yml name, and where its
// migrations are (relative to the app root, or absolute).
type DatabasePaths struct {
	Name  string
	Paths []string
}

// TableName is schema_migrations' name as migrun was told it: Rails'
// table_name_prefix + schema_migrations_table_name + table_name_suffix.
// The Set flags say a value was given, even an empty one.
type TableName struct {
	Prefix, Name, Suffix          string
	PrefixSet, NameSet, SuffixSet bool
}

// String is the full name, Rails' defaults filling what was not given.
func (t TableName) String() string {
	name := t.Name
	if !t.NameSet {
		name = "schema_migrations"
	}
	return t.Prefix + name + t.Suffix
}

func (t TableName) anySet() bool { return t.PrefixSet || t.NameSet || t.SuffixSet }

// Database is one database Rails checks, as far as files tell.
type Database struct {
	Name  string
	Paths []string        // its migrations paths, relative to the app root or absolute
	Files []MigrationFile // sorted by version
	Table string          // schema_migrations' full name
	// SearchPath is the schema_search_path Rails' database config gives
	// (from the manifest), used when the database URL gives none.
	SearchPath string
	// SearchPathVariable is the config's variables: search_path, which
	// Rails SETs after schema_search_path: it wins over the URL.
	SearchPathVariable string
	// SearchPathFromURL, when not empty, says why only the URL's
	// schema_search_path can tell the search path: without one, migrun
	// cannot tell.
	SearchPathFromURL string
}

// Analysis is what the app's files say about its migrations.
type Analysis struct {
	Databases []Database
	// Unsure says, one line each with its fix, why migrun cannot tell
	// that Rails would find what Databases say. Non-empty: the gate stays shut.
	Unsure       []string
	Manifest     string // the manifest read, "" for none
	RailsVersion string // from the manifest or Gemfile.lock; "" unknown
}

// Analyze reads the app's migrations and configuration, through its
// manifest when there is one; it is cheap enough to redo at every check.
func Analyze(app App) Analysis {
	if app.Environment == "" {
		app.Environment = "development" // Rails.env without RAILS_ENV or RACK_ENV
	}
	if app.Root == "" {
		app.Root = "."
	}
	if app.Now == nil {
		app.Now = time.Now
	}
	manifest := app.Manifest
	if manifest == "" {
		manifest = filepath.Join(app.Root, DefaultManifest)
		if _, err := os.Lstat(manifest); errors.Is(err, fs.ErrNotExist) {
			return analyzeApp(app)
		}
	} else if !filepath.IsAbs(manifest) {
		manifest = filepath.Join(app.Root, manifest)
	}
	return analyzeManifest(app, manifest)
}

// analyzeApp reads the app without a manifest: migrun's own discovery,
// and a refusal whenever the app's configuration may move migrations or
// schema_migrations where migrun was not told.
func analyzeApp(app App) Analysis {
	var a Analysis
	root, env := app.Root, app.Environment
	explicit := app.Databases != nil
	if !explicit && !isRailsApp(root) {
		a.Unsure = append(a.Unsure, fmt.Sprintf("no Rails app in %s (no config/application.rb nor config/environment.rb): run migrun in the app's directory, where rails runs, or set %s", absolute(root), settingMigrationsPaths))
		return a
	}
	a.RailsVersion = gemfileLockVersion(root, "activerecord")
	searchFromURL := ""

	ymlPath := filepath.Join(root, "config", "database.yml")
	text, err := os.ReadFile(ymlPath)
	switch {
	case err == nil:
		y := parseDatabaseYML("config/database.yml", string(text), env)
		a.checkDatabaseYML(y, app)
		if len(y.SchemaSearch) > 0 {
			searchFromURL = fmt.Sprintf("%s sets schema_search_path: put the same ?schema_search_path= in the database URL, so migrun reads the schema_migrations Rails reads, %s", y.SchemaSearch[0], manifestFix)
		}
	case !errors.Is(err, fs.ErrNotExist):
		a.Unsure = append(a.Unsure, fmt.Sprintf("cannot read config/database.yml: %s: make it readable by migrun's user", errText(err)))
	}

	rb := scanRubyConfig(root, env)
	for _, f := range rb.Unreadable {
		a.Unsure = append(a.Unsure, fmt.Sprintf("cannot read %s, which Rails loads as configuration: make it readable by migrun's user", f))
	}
	for _, c := range []struct {
		seen    []string
		set     bool
		word    string
		setting string
	}{
		{rb.TablePrefix, app.Table.PrefixSet, "table_name_prefix", settingTablePrefix},
		{rb.TableSuffix, app.Table.SuffixSet, "table_name_suffix", settingTableSuffix},
		{rb.TableName, app.Table.NameSet, "schema_migrations_table_name", settingTableName},
	} {
		if len(c.seen) > 0 && !c.set {
			a.Unsure = append(a.Unsure, fmt.Sprintf("%s mentions %s: schema_migrations may have another name; set %s to the value Rails uses (empty if none), %s", c.seen[0], c.word, c.setting, manifestFix))
		}
	}
	if !explicit {
		if len(rb.MigrationsPaths) > 0 {
			a.Unsure = append(a.Unsure, fmt.Sprintf("%s mentions migrations paths: Rails may look beyond db/migrate; set %s (or %s) to Rails' paths, %s", rb.MigrationsPaths[0], settingMigrationsPaths, settingDatabases, manifestFix))
		}
		engines, doubts := pathEngines(root)
		for _, e := range engines {
			a.Unsure = append(a.Unsure, fmt.Sprintf("%s: an engine may add it to Rails' migrations paths; set %s with it if it does, %s", e, settingMigrationsPaths, manifestFix))
		}
		for _, d := range doubts {
			a.Unsure = append(a.Unsure, fmt.Sprintf("%s; set %s to Rails' migrations paths, %s", d, settingMigrationsPaths, manifestFix))
		}
	}

	var rules migrationRules
	if !versionBefore(a.RailsVersion, 7, 2) {
		rules.TimestampLimit = timestampLimit(app.Now())
	}
	databases := app.Databases
	if !explicit {
		databases = []DatabasePaths{{Name: "primary", Paths: []string{"db/migrate"}}}
	} else if len(databases) == 0 {
		a.Unsure = append(a.Unsure, fmt.Sprintf("no database to check: set %s or %s to Rails' databases and paths", settingDatabases, settingMigrationsPaths))
	}
	for _, d := range databases {
		db := Database{Name: d.Name, Paths: d.Paths, Table: app.Table.String(), SearchPathFromURL: searchFromURL}
		g := globMigrations(root, d.Paths)
		a.Unsure = append(a.Unsure, g.Unsure...)
		for _, p := range g.Missing {
			a.Unsure = append(a.Unsure, fmt.Sprintf("migrations path %s of database %s is not a directory in %s: run migrun in the app's directory, or fix %s", p, d.Name, absolute(root), settingMigrationsPaths))
		}
		var problems []string
		db.Files, problems = readMigrations(g.Entries, rules)
		a.Unsure = append(a.Unsure, problems...)
		if len(g.Entries) == 0 && (len(d.Paths) == 0 || len(g.Missing) < len(d.Paths)) {
			a.Unsure = append(a.Unsure, fmt.Sprintf("no migration files for database %s in %s (in %s): Rails would find nothing to check, which is more likely a wrong directory than an app without migrations", d.Name, strings.Join(d.Paths, ", "), absolute(root)))
		}
		a.Databases = append(a.Databases, db)
	}
	return a
}

// checkDatabaseYML refuses what database.yml says migrun was not told.
func (a *Analysis) checkDatabaseYML(y databaseYML, app App) {
	explicit := app.Databases != nil
	fix := fmt.Sprintf("set %s to every database Rails checks, %s", settingDatabases, manifestFix)
	if len(y.Doubts) > 0 {
		if !explicit {
			for _, d := range y.Doubts {
				a.Unsure = append(a.Unsure, fmt.Sprintf("%s: migrun cannot tell which databases Rails sees; %s", d, fix))
			}
		}
	} else {
		// The databases db:abort_if_pending_migrations checks: configs_for
		// leaves out replicas, and from Rails 7.0 database_tasks: false.
		var checked []string
		for _, db := range y.Databases {
			if db.Replica || (!db.DatabaseTasks && !versionBefore(a.RailsVersion, 7, 0) && a.RailsVersion != "") {
				continue
			}
			checked = append(checked, db.Name)
		}
		if !y.ThreeTier {
			checked = []string{"primary"}
		}
		switch {
		case explicit:
			for _, name := range checked {
				if !slices.ContainsFunc(app.Databases, func(d DatabasePaths) bool { return d.Name == name }) {
					a.Unsure = append(a.Unsure, fmt.Sprintf("config/database.yml: Rails checks database %s (%s), which %s leaves out; %s", name, app.Environment, settingDatabases, fix))
				}
			}
		case len(checked) != 1 || checked[0] != "primary":
			a.Unsure = append(a.Unsure, fmt.Sprintf("config/database.yml: Rails checks databases %s in %s, migrun only primary: %s", strings.Join(checked, ", "), app.Environment, fix))
		}
	}
	if !explicit && len(y.MigrationsPaths) > 0 {
		a.Unsure = append(a.Unsure, fmt.Sprintf("%s sets migrations_paths: Rails looks beyond db/migrate; %s", y.MigrationsPaths[0], fix))
	}
	if len(y.SearchPathVar) > 0 {
		a.Unsure = append(a.Unsure, fmt.Sprintf("%s sets search_path (variables:), which Rails SETs on every connection and migrun cannot be told: use schema_search_path in the database URL instead, %s", y.SearchPathVar[0], manifestFix))
	}
}

// analyzeManifest reads the app through its manifest: Rails' own view at
// build time, checked against the files there are now.
func analyzeManifest(app App, path string) Analysis {
	var a Analysis
	a.Manifest = path
	regenerate := "regenerate it when the image is built, from the same files"
	m, err := ReadManifest(path)
	if err != nil {
		a.Unsure = append(a.Unsure, fmt.Sprintf("manifest %s: %s: %s", path, manifestErr(err), regenerate))
		return a
	}
	a.RailsVersion = m.RailsVersion
	if m.Environment != app.Environment {
		a.Unsure = append(a.Unsure, fmt.Sprintf("manifest %s was written for RAILS_ENV=%s, this is %s: write it with the RAILS_ENV of the deploy", path, m.Environment, app.Environment))
		return a
	}
	switch drift, err := configDrift(app.Root, app.Environment, m.ConfigFiles); {
	case err != nil:
		a.Unsure = append(a.Unsure, fmt.Sprintf("manifest %s: cannot compare the app's configuration with it: %v", path, err))
	case len(drift) > 0:
		if len(drift) > 5 {
			drift = append(drift[:5:5], fmt.Sprintf("and %d more", len(drift)-5))
		}
		a.Unsure = append(a.Unsure, fmt.Sprintf("manifest %s: the app's configuration differs from when it was written (%s): %s", path, strings.Join(drift, ", "), regenerate))
	}
	searchFromURL := ""
	for _, n := range m.DynamicSettings {
		where := fmt.Sprintf("%s:%d", n.File, n.Line)
		switch n.Setting {
		case "schema_search_path", "schema_order":
			searchFromURL = fmt.Sprintf("%s sets schema_search_path through ERB, which the manifest cannot vouch for: put it in the database URL (?schema_search_path=), or make it static", where)
		case "erb":
			a.Unsure = append(a.Unsure, fmt.Sprintf("%s: ERB may give Rails other databases at deploy than when the manifest was written: make database.yml's structure static, or set %s", where, settingDatabases))
		default:
			a.Unsure = append(a.Unsure, fmt.Sprintf("%s sets %s through ERB, which the manifest cannot vouch for: make it static", where, n.Setting))
		}
	}
	if app.Databases != nil {
		a.checkExplicitAgainstManifest(app, m)
	}
	total := 0
	for _, mdb := range m.Databases {
		db := Database{Name: mdb.Name, Table: mdb.SchemaMigrationsTable, SearchPathFromURL: searchFromURL}
		if mdb.SchemaSearchPath != nil {
			db.SearchPath = *mdb.SchemaSearchPath
		}
		if mdb.SearchPathVariable != nil {
			db.SearchPathVariable = *mdb.SearchPathVariable
		}
		if app.Table.anySet() && app.Table.String() != mdb.SchemaMigrationsTable {
			a.Unsure = append(a.Unsure, fmt.Sprintf("manifest %s: Rails names database %s's schema_migrations %q, migrun's settings %q: remove migrun's table name settings", path, mdb.Name, mdb.SchemaMigrationsTable, app.Table.String()))
		}
		for _, p := range mdb.MigrationsPaths {
			db.Paths = append(db.Paths, p.Path)
			full := p.Path
			if !filepath.IsAbs(full) {
				full = filepath.Join(app.Root, full)
			}
			info, err := os.Stat(full)
			if now := err == nil && info.IsDir(); now != p.Directory {
				was := map[bool]string{true: "a directory", false: "not a directory"}
				a.Unsure = append(a.Unsure, fmt.Sprintf("migrations path %s of database %s was %s when the manifest was written and is %s now: %s", p.Path, mdb.Name, was[p.Directory], was[now], regenerate))
			}
		}
		g := globMigrations(app.Root, db.Paths)
		a.Unsure = append(a.Unsure, g.Unsure...)
		a.Unsure = append(a.Unsure, manifestDiff(mdb, g.Entries, regenerate)...)
		for _, mig := range mdb.Migrations {
			db.Files = append(db.Files, MigrationFile{Version: mig.Version, Name: mig.Name, Scope: mig.Scope, Path: mig.File})
		}
		slices.SortStableFunc(db.Files, func(x, y MigrationFile) int { return compareIntegers(x.Version, y.Version) })
		total += len(db.Files)
		a.Databases = append(a.Databases, db)
	}
	if total == 0 {
		a.Unsure = append(a.Unsure, fmt.Sprintf("manifest %s lists no migration at all: Rails would find nothing to check, which is more likely a wrong directory than an app without migrations", path))
	}
	return a
}

// checkExplicitAgainstManifest refuses explicit databases or paths that
// are not Rails'.
func (a *Analysis) checkExplicitAgainstManifest(app App, m *Manifest) {
	told := map[string][]string{}
	for _, d := range app.Databases {
		told[d.Name] = normalizedPaths(app.Root, d.Paths)
	}
	for _, mdb := range m.Databases {
		paths, ok := told[mdb.Name]
		var rails []string
		for _, p := range mdb.MigrationsPaths {
			rails = append(rails, p.Path)
		}
		rails = normalizedPaths(app.Root, rails)
		switch {
		case !ok:
			a.Unsure = append(a.Unsure, fmt.Sprintf("the manifest (Rails) checks database %s, which %s leaves out: set it as Rails has it, or unset it and let the manifest decide", mdb.Name, settingDatabases))
		case !slices.Equal(paths, rails):
			a.Unsure = append(a.Unsure, fmt.Sprintf("database %s: the manifest (Rails) has migrations paths %s, migrun's settings %s: unset %s/%s and let the manifest decide", mdb.Name, strings.Join(rails, ", "), strings.Join(paths, ", "), settingDatabases, settingMigrationsPaths))
		}
	}
}

func normalizedPaths(root string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		out[i] = relTo(root, filepath.Clean(p))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// maxDiff bounds the differences reported per database.
const maxDiff = 10

// manifestDiff compares the files Rails listed at build time with what
// the glob finds now.
func manifestDiff(mdb ManifestDatabase, found []globbed, regenerate string) []string {
	listed := map[string]ManifestMigration{}
	for _, mig := range mdb.Migrations {
		listed[mig.File] = mig
	}
	now := map[string]bool{}
	var added []string
	for _, e := range found {
		if now[e.Rel] {
			continue // found twice: a duplicate Rails refused at build time, so also a difference below
		}
		now[e.Rel] = true
		if _, ok := listed[e.Rel]; !ok {
			added = append(added, e.Rel)
		}
	}
	if len(found) != len(now) {
		added = append(added, "(a file found twice)")
	}
	var removed []ManifestMigration
	for _, mig := range mdb.Migrations {
		if !now[mig.File] {
			removed = append(removed, mig)
		}
	}
	var out []string
	for _, r := range removed {
		renamed := ""
		for i, f := range added {
			if g, ok := ParseMigrationFilename(filepath.Base(f)); ok && g.Version() == r.Version {
				renamed = f
				added = slices.Delete(added, i, i+1)
				break
			}
		}
		if renamed != "" {
			out = append(out, fmt.Sprintf("database %s: %s is now %s, unlike the manifest: %s", mdb.Name, r.File, renamed, regenerate))
		} else {
			out = append(out, fmt.Sprintf("database %s: %s is in the manifest but not found: %s", mdb.Name, r.File, regenerate))
		}
	}
	for _, f := range added {
		out = append(out, fmt.Sprintf("database %s: %s is not in the manifest: %s", mdb.Name, f, regenerate))
	}
	if len(out) > maxDiff {
		out = append(out[:maxDiff], fmt.Sprintf("database %s: and %d more differences from the manifest", mdb.Name, len(out)-maxDiff))
	}
	return out
}

func manifestErr(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "not found"
	}
	return errText(err)
}

func absolute(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
