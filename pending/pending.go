// Package pending tells which of the migrations an app carries its
// database has not applied yet, the way Rails' pending-migration check
// does, without booting Ruby: the versions of the migration files against
// the version column of schema_migrations.
package pending

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
	"github.com/migrun/migrun/rails"
)

// ErrUnsupported: there is no way to read this database's schema_migrations.
var ErrUnsupported = errors.New("pending check not supported")

// Database is one of the app's databases and the migrations it carries.
type Database struct {
	Name  string // as in database.yml: primary, animals, ...
	URL   *dburl.URL
	Files []rails.MigrationFile
}

// Checker reads one database's applied versions over one connection it
// keeps between checks.
type Checker struct {
	db             Database
	connectTimeout time.Duration
	log            *slog.Logger
	pg             *pgx.Conn
	my             *sql.DB
}

// New returns a Checker; it connects on the first Pending.
func New(db Database, connectTimeout time.Duration, log *slog.Logger) (*Checker, error) {
	if db.URL == nil || (db.URL.Adapter != dburl.PostgreSQL && !db.URL.IsMySQL()) {
		adapter := "none"
		if db.URL != nil {
			adapter = string(db.URL.Adapter)
		}
		return nil, fmt.Errorf("%w: database %s: adapter %s", ErrUnsupported, db.Name, adapter)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Checker{db: db, connectTimeout: connectTimeout, log: log}, nil
}

// Pending returns the migration files not yet applied. A missing
// schema_migrations table means all of them. Errors wrapping
// dbconn.ErrUnavailable mean the database could not be reached in time.
func (c *Checker) Pending(ctx context.Context) ([]rails.MigrationFile, error) {
	applied, err := c.applied(ctx)
	if err != nil {
		c.Close() // reconnect next time
		return nil, fmt.Errorf("database %s: %w", c.db.Name, err)
	}
	return rails.Pending(c.db.Files, applied), nil
}

func (c *Checker) applied(ctx context.Context) ([]string, error) {
	if c.db.URL.Adapter == dburl.PostgreSQL {
		return c.appliedPostgres(ctx)
	}
	return c.appliedMySQL(ctx)
}

func (c *Checker) appliedPostgres(ctx context.Context) ([]string, error) {
	if c.pg == nil {
		cfg, err := dbconn.PostgresConfig(c.db.URL)
		if err != nil {
			return nil, err
		}
		cfg.RuntimeParams["application_name"] = "migrun-wait"
		err = dbconn.Retry(ctx, c.connectTimeout, c.log, dbconn.PostgresAddr(c.db.URL), func(ctx context.Context) error {
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return dbconn.ClassifyPostgres(err, cfg)
			}
			c.pg = conn
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	rows, err := c.pg.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, noTable(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return versions, noTable(err)
}

func (c *Checker) appliedMySQL(ctx context.Context) ([]string, error) {
	if c.my == nil {
		cfg, err := dbconn.MySQLConfig(c.db.URL)
		if err != nil {
			return nil, err
		}
		dbconn.QuietMySQLDriver()
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", dbconn.ErrSettings, dbconn.LastLine(err))
		}
		err = dbconn.Retry(ctx, c.connectTimeout, c.log, dbconn.MySQLAddr(c.db.URL), func(ctx context.Context) error {
			db := sql.OpenDB(connector)
			db.SetMaxOpenConns(1)
			if err := db.PingContext(ctx); err != nil {
				db.Close()
				return dbconn.ClassifyMySQL(err)
			}
			c.my = db
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	rows, err := c.my.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, noTable(err)
	}
	defer rows.Close()
	var versions []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		versions = append(versions, v)
	}
	return versions, rows.Err()
}

// noTable turns "no schema_migrations table" into no error (nothing
// applied yet) and other errors into one line.
func noTable(err error) error {
	var pgErr *pgconn.PgError
	var myErr *mysql.MySQLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42P01", errors.As(err, &myErr) && myErr.Number == 1146:
		return nil
	}
	return errors.New(dbconn.LastLine(err))
}

// Close closes the connection.
func (c *Checker) Close() {
	if c.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.pg.Close(ctx)
		c.pg = nil
	}
	if c.my != nil {
		_ = c.my.Close()
		c.my = nil
	}
}
