package pending

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/rails"
)

// DatabasePaths is a database by its database.yml name and its migrations
// paths (relative to the app root, or absolute).
type DatabasePaths = rails.DatabasePaths

// TableName is schema_migrations' name as migrun was told it: prefix,
// name and suffix, each with whether it was set.
type TableName = rails.TableName

// Config is what the gate is told.
type Config struct {
	Root        string // the app root: the directory Rails runs in; "" is the working directory
	Environment string // RAILS_ENV; "" is development
	// Manifest is the manifest's path; "" means <Root>/db/migrun-manifest.json,
	// used when it exists. A manifest named here must exist.
	Manifest string
	// Databases, when not nil, are the databases and migrations paths
	// migrun was told (MIGRUN_DATABASES or MIGRUN_MIGRATIONS_PATHS set);
	// nil means Rails' default: primary, db/migrate.
	Databases []DatabasePaths
	Table     TableName // explicit table name settings
	// URLFor returns a database's URL by its database.yml name
	// (DATABASE_URL for primary, <NAME>_DATABASE_URL for the others).
	URLFor         func(name string) (*dburl.URL, error)
	ConnectTimeout time.Duration // how long to keep trying to reach a database
	Logger         *slog.Logger  // nil: discard
}

// Migration is a pending migration.
type Migration struct {
	Database string // its database's name
	Version  string // as Rails compares it
	Name     string // camelized: "CreateUsers"
	Path     string // relative to the app root when below it
}

// Verdict is what a check found.
type Verdict struct {
	Pending []Migration // by database (in the order Rails checks them), then version
	// Unsure says, one line each with its fix, why migrun cannot tell
	// whether Rails would find something to do. Non-empty keeps the gate
	// shut, and then Pending is not read.
	Unsure []string
}

// Current reports whether the gate opens: nothing pending, nothing unsure.
func (v Verdict) Current() bool { return len(v.Pending) == 0 && len(v.Unsure) == 0 }

// maxUnsure bounds the reasons a verdict carries.
const maxUnsure = 20

// Gate checks, again and again, whether Rails would find a migration to
// run. It keeps one connection per database between checks. Its methods
// may be called from several goroutines.
type Gate struct {
	cfg     Config
	log     *slog.Logger
	mu      sync.Mutex
	sources map[string]*source // by database name
}

// Open returns a gate; it reads nothing and connects to nothing until Check.
func Open(cfg Config) (*Gate, error) {
	if cfg.URLFor == nil {
		return nil, errors.New("pending: Config.URLFor is nil")
	}
	if cfg.ConnectTimeout <= 0 {
		return nil, fmt.Errorf("pending: connect timeout must be positive, got %s", cfg.ConnectTimeout)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, log: log, sources: map[string]*source{}}, nil
}

// Check reads the app's migrations (files, configuration, manifest: all
// again, as they may change under a ConfigMap mount) and, when migrun can
// tell what Rails would find, every database's schema_migrations. Its
// error is only for a database it cannot reach or read; errors wrapping
// dbconn.ErrUnavailable mean unreachable within the connect timeout.
func (g *Gate) Check(ctx context.Context) (Verdict, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := rails.Analyze(rails.App{
		Root:        g.cfg.Root,
		Environment: g.cfg.Environment,
		Manifest:    g.cfg.Manifest,
		Databases:   g.cfg.Databases,
		Table:       g.cfg.Table,
	})
	if len(a.Unsure) > 0 {
		return verdict(nil, a.Unsure), nil
	}
	if len(a.Databases) == 0 { // Analyze says why; never open on nothing checked
		return verdict(nil, []string{"no database to check"}), nil
	}
	type read struct {
		db  rails.Database
		src *source
		q   query
	}
	var reads []read
	var unsure []string
	seen := map[string]bool{}
	for _, db := range a.Databases {
		u, err := g.cfg.URLFor(db.Name)
		if err != nil {
			unsure = append(unsure, fmt.Sprintf("database %s: no URL: %v", db.Name, err))
			continue
		}
		if err := supported(db.Name, u); err != nil {
			unsure = append(unsure, fmt.Sprintf("database %s: migrun reads schema_migrations on PostgreSQL and MySQL/MariaDB only, not %s", db.Name, u.Adapter))
			continue
		}
		if hasParam(u, "migrations_paths") {
			unsure = append(unsure, fmt.Sprintf("database %s: its URL sets migrations_paths, which Rails uses and migrun does not: move them to %s, or to database.yml and write a manifest", db.Name, "MIGRUN_DATABASES"))
			continue
		}
		q := query{table: db.Table}
		if u.Adapter == dburl.PostgreSQL {
			if _, err := quotePostgresTable(db.Table); err != nil {
				unsure = append(unsure, fmt.Sprintf("database %s: %v", db.Name, err))
				continue
			}
			var why string
			if q.searchPath, q.setPath, why = searchPath(db, u); why != "" {
				unsure = append(unsure, fmt.Sprintf("database %s: %s", db.Name, why))
				continue
			}
		}
		seen[db.Name] = true
		reads = append(reads, read{db: db, src: g.source(db.Name, u), q: q})
	}
	for name, src := range g.sources {
		if !seen[name] {
			src.close()
			delete(g.sources, name)
		}
	}
	if len(unsure) > 0 {
		return verdict(nil, unsure), nil
	}
	var pending []Migration
	for _, r := range reads {
		versions, err := r.src.versions(ctx, r.q)
		if err != nil {
			return Verdict{}, err
		}
		for _, f := range rails.Pending(r.db.Files, versions) {
			pending = append(pending, Migration{Database: r.db.Name, Version: f.Version, Name: f.Name, Path: f.Path})
		}
	}
	return verdict(pending, nil), nil
}

func verdict(pending []Migration, unsure []string) Verdict {
	if len(unsure) > maxUnsure {
		unsure = append(unsure[:maxUnsure:maxUnsure], fmt.Sprintf("and %d more reasons", len(unsure)-maxUnsure))
	}
	return Verdict{Pending: pending, Unsure: unsure}
}

// source returns the kept connection for a database, a new one when its
// URL changed.
func (g *Gate) source(name string, u *dburl.URL) *source {
	if s, ok := g.sources[name]; ok {
		if s.url.Redacted() == u.Redacted() && s.url.Password == u.Password {
			return s
		}
		s.close()
	}
	s := &source{name: name, url: u, connectTimeout: g.cfg.ConnectTimeout, log: g.log}
	g.sources[name] = s
	return s
}

// searchPath is the search path Rails' PostgreSQL adapter would use on
// the database, whether to set it (false: the server's default), or why
// migrun cannot tell. PostgreSQLAdapter#configure_connection (6.1 to 8.x):
// `self.schema_search_path = @config[:schema_search_path] ||
// @config[:schema_order]`, the URL's query overriding database.yml; then
// each of variables is SET, search_path included.
func searchPath(db rails.Database, u *dburl.URL) (value string, set bool, unsure string) {
	switch {
	case db.SearchPathVariable != "":
		value = db.SearchPathVariable
	case hasParam(u, "schema_search_path"):
		value = u.Params["schema_search_path"]
	case hasParam(u, "schema_order"):
		value = u.Params["schema_order"]
	case db.SearchPathFromURL != "":
		return "", false, db.SearchPathFromURL
	case db.SearchPath != "":
		value = db.SearchPath
	default:
		return "", false, ""
	}
	switch {
	case strings.ContainsAny(value, `';\`) || strings.Contains(value, "--") || strings.Contains(value, "/*") ||
		strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", false, fmt.Sprintf("schema_search_path %q: Rails pastes it into `SET search_path TO …` and migrun cannot tell how PostgreSQL reads that; use plain or double-quoted schema names separated by commas", value)
	}
	return value, true, ""
}

// hasParam reports whether the URL sets key as Rails reads it:
// ConnectionUrlResolver#to_hash drops blank values (compact_blank).
func hasParam(u *dburl.URL, key string) bool {
	return strings.TrimSpace(u.Params[key]) != ""
}

// Close closes the gate's connections.
func (g *Gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, s := range g.sources {
		s.close()
		delete(g.sources, name)
	}
}
