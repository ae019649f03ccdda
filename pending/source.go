package pending

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// source reads one database's schema_migrations over one connection it
// keeps between reads.
type source struct {
	name           string
	url            *dburl.URL
	connectTimeout time.Duration
	log            *slog.Logger
	pg             *pgx.Conn
	my             *sql.DB
}

// query is what to read: the table as Rails names it, and for PostgreSQL
// the search path Rails would set ("" with setPath false: the server's).
type query struct {
	table      string
	searchPath string
	setPath    bool
}

// versions returns schema_migrations' version column as text; a missing
// table is no versions, as Rails creates it empty (Migrator#initialize:
// `@schema_migration.create_table`). Errors wrapping dbconn.ErrUnavailable
// mean the database could not be reached in time.
func (s *source) versions(ctx context.Context, q query) ([]string, error) {
	kept := s.pg != nil || s.my != nil
	versions, err := s.read(ctx, q)
	lost := err != nil && (!fromServer(err) || s.pg != nil && s.pg.IsClosed())
	if lost && kept && ctx.Err() == nil && !errors.Is(err, dbconn.ErrUnavailable) {
		// The connection kept since the last check died (a server
		// restart, a proxy's idle timeout): one new connection.
		s.log.Info("database connection lost; reconnecting", "database", s.name, "err", dbconn.LastLine(err))
		s.close()
		versions, err = s.read(ctx, q)
	}
	if err := noTable(err); err != nil {
		s.close() // reconnect next time
		return nil, fmt.Errorf("database %s: %w", s.name, err)
	}
	return versions, nil
}

func (s *source) read(ctx context.Context, q query) ([]string, error) {
	if s.url.Adapter == dburl.PostgreSQL {
		return s.postgres(ctx, q)
	}
	return s.mysql(ctx, q)
}

// fromServer reports whether the server answered err: the connection works.
func fromServer(err error) bool {
	var pgErr *pgconn.PgError
	var myErr *mysql.MySQLError
	return errors.As(err, &pgErr) || errors.As(err, &myErr)
}

func (s *source) postgres(ctx context.Context, q query) ([]string, error) {
	table, err := quotePostgresTable(q.table)
	if err != nil {
		return nil, err
	}
	if s.pg == nil {
		cfg, err := dbconn.PostgresConfig(s.url)
		if err != nil {
			return nil, err
		}
		cfg.RuntimeParams["application_name"] = "migrun-wait"
		err = dbconn.Retry(ctx, s.connectTimeout, s.log, dbconn.PostgresAddr(s.url), func(ctx context.Context) error {
			conn, err := dbconn.ConnectPostgres(ctx, cfg)
			if err != nil {
				return dbconn.ClassifyPostgres(err, cfg)
			}
			s.pg = conn
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// CAST: Ruby's to_i reads whatever type the column has as its text.
	sql := "SELECT CAST(version AS text) FROM " + table
	if !q.setPath {
		return collectPostgres(s.pg.Query(ctx, sql))
	}
	// Rails runs `SET search_path TO <schema_search_path>` on connecting.
	// set_config(…, true) is the same setting local to one transaction.
	// Both statements go in one batch, which the simple protocol
	// (dbconn.PostgresConfig) sends as one message: the server runs them
	// in one implicit transaction, so the setting holds for the
	// read through a transaction pooler (PgBouncer) and is gone after it,
	// and the transaction never waits on migrun between statements. (An
	// explicit BEGIN … ROLLBACK would leave it open for round trips, and a
	// wait whose network dropped right then would keep it open until the
	// server noticed; an index built concurrently meanwhile waits for it.)
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('search_path', $1, true)", q.searchPath)
	batch.Queue(sql)
	results := s.pg.SendBatch(ctx, batch)
	defer results.Close()
	if _, err := results.Exec(); err != nil {
		return nil, fmt.Errorf("schema_search_path %q: %w", q.searchPath, err)
	}
	return collectPostgres(results.Query())
}

func collectPostgres(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (s *source) mysql(ctx context.Context, q query) ([]string, error) {
	if s.my == nil {
		cfg, err := dbconn.MySQLConfig(s.url)
		if err != nil {
			return nil, err
		}
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", dbconn.ErrSettings, dbconn.LastLine(err))
		}
		err = dbconn.Retry(ctx, s.connectTimeout, s.log, dbconn.MySQLAddr(s.url), func(ctx context.Context) error {
			db := sql.OpenDB(connector)
			db.SetMaxOpenConns(1)
			if err := db.PingContext(ctx); err != nil {
				db.Close()
				return dbconn.ClassifyMySQL(err)
			}
			s.my = db
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	rows, err := s.my.QueryContext(ctx, "SELECT version FROM "+quoteMySQLTable(q.table))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var versions []string
	for rows.Next() {
		var v sql.NullString
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		versions = append(versions, v.String) // NULL: nil.to_i is 0, as "" is
	}
	return versions, rows.Err()
}

// noTable turns "no such table" into no error (nothing applied yet) and
// other errors into one line, ErrUnavailable and ErrSettings kept.
func noTable(err error) error {
	var pgErr *pgconn.PgError
	var myErr *mysql.MySQLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000"), // undefined table, schema
		errors.As(err, &myErr) && myErr.Number == 1146: // no such table
		return nil
	case errors.Is(err, dbconn.ErrUnavailable), errors.Is(err, dbconn.ErrSettings), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return errors.New(dbconn.LastLine(err))
}

func (s *source) close() {
	if s.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.pg.Close(ctx)
		s.pg = nil
	}
	if s.my != nil {
		_ = s.my.Close()
		s.my = nil
	}
}

// postgresNamePart is Rails' PostgreSQL::Utils.extract_schema_qualified_name's scan.
var postgresNamePart = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^".]+|"[^"]*"`) }) // compiled on first use, not at start-up

// quotePostgresTable quotes a table name as Rails' PostgreSQL adapter does
// (Quoting#quote_table_name: Utils.extract_schema_qualified_name(name).quoted,
// 6.1 to 8.x): the name scanned into parts /[^".]+|"[^"]*"/; with two or
// more, the first is the schema and the second the table (the rest
// ignored); surrounding quotes dropped; each part quoted as an identifier.
// So "app.schema_migrations" is "app"."schema_migrations".
func quotePostgresTable(name string) (string, error) {
	parts := postgresNamePart().FindAllString(name, 2)
	if len(parts) == 0 || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("schema_migrations table name %q: Rails cannot quote it either", name)
	}
	for i, p := range parts {
		if strings.HasPrefix(p, `"`) {
			p = p[1 : len(p)-1]
		}
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, "."), nil
}

// quoteMySQLTable quotes a table name as Rails' MySQL adapters do
// (MySQL::Quoting#quote_table_name): backticks doubled, each dot
// splitting database from table: "other.schema_migrations" is
// `other`.`schema_migrations`.
func quoteMySQLTable(name string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(name, "`", "``"), ".", "`.`") + "`"
}
