// Package pending is the gate of `migrun wait` and `migrun run
// --skip-if-current`: it tells whether Rails would find a migration to
// run, without booting Ruby, and says "cannot tell" whenever it cannot be
// sure Rails would find nothing to do. Only "current" opens the gate.
//
// Gate does it all: the app's files and configuration (or its manifest,
// Rails' own view written at build time) through package rails, then each
// database's schema_migrations.
package pending

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/rails"
)

// ErrUnsupported: there is no way to read this database's schema_migrations.
var ErrUnsupported = errors.New("pending check not supported")

// Database is one of the app's databases and the migrations it carries.
//
// Superseded by Gate, with Checker.
type Database struct {
	Name  string // as in database.yml: primary, animals, ...
	URL   *dburl.URL
	Files []rails.MigrationFile
}

// Checker reads one database's applied versions over one connection it
// keeps between checks.
//
// Superseded by Gate, which cmd/migrun is to use instead: Checker trusts files it is given and knows nothing of what
// Rails would refuse or find elsewhere; use Gate.
type Checker struct {
	db  Database
	src *source
}

// New returns a Checker; it connects on the first Pending.
//
// Superseded by Open.
func New(db Database, connectTimeout time.Duration, log *slog.Logger) (*Checker, error) {
	if err := supported(db.Name, db.URL); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{db: db, src: &source{name: db.Name, url: db.URL, connectTimeout: connectTimeout, log: log}}, nil
}

// Pending returns the migration files not yet applied. A missing
// schema_migrations table means all of them. Errors wrapping
// dbconn.ErrUnavailable mean the database could not be reached in time.
func (c *Checker) Pending(ctx context.Context) ([]rails.MigrationFile, error) {
	applied, err := c.src.versions(ctx, query{table: "schema_migrations"})
	if err != nil {
		return nil, err
	}
	return rails.Pending(c.db.Files, applied), nil
}

// Close closes the connection.
func (c *Checker) Close() { c.src.close() }

// supported refuses a database whose schema_migrations migrun cannot read.
func supported(name string, u *dburl.URL) error {
	if u == nil || (u.Adapter != dburl.PostgreSQL && !u.IsMySQL()) {
		adapter := "none"
		if u != nil {
			adapter = string(u.Adapter)
		}
		return fmt.Errorf("%w: database %s: adapter %s", ErrUnsupported, name, adapter)
	}
	return nil
}
