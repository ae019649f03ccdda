package main

import (
	"context"
	"database/sql"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// pgConfig is the connection configuration migrun itself builds from a
// Rails URL (sslmode, simple protocol, application_name), so that the
// benchmark's own connections cost what migrun's cost.
func pgConfig(rawURL string) (*pgx.ConnConfig, error) {
	u, err := dburl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return dbconn.PostgresConfig(u)
}

// pgConnect connects to a Rails URL as migrun would, under another
// application_name so the benchmark's session is not counted as a runner.
func pgConnect(ctx context.Context, rawURL string) (*pgx.Conn, error) {
	cfg, err := pgConfig(rawURL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "migrun-bench"
	return dbconn.ConnectPostgres(ctx, cfg)
}

// myConfig is migrun's go-sql-driver configuration for a Rails URL.
func myConfig(rawURL string) (*mysql.Config, error) {
	u, err := dburl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return dbconn.MySQLConfig(u)
}

// openMySQL opens a database/sql handle on a Rails URL, as migrun does.
func openMySQL(rawURL string) (*sql.DB, error) {
	cfg, err := myConfig(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}
