package sessions

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// ErrNotPostgres: Probe was given a URL of another database.
var ErrNotPostgres = errors.New("not a PostgreSQL URL")

// Probe finds out whether startup options (what PGOPTIONS sends) reach the
// PostgreSQL server behind u: it connects once with "-c
// migrun.options_probe=on" added to the options and reads the setting back.
//
//   - honoured: the setting reads back; OptionsReach is true and Version set.
//   - refused: the connection fails with the option but succeeds without it
//     (PgBouncer: "unsupported startup parameter: options"); the command's
//     libpq connections would fail the same way.
//   - ignored: the connection succeeds but the setting is not there
//     (PgBouncer with ignore_startup_parameters = options).
//
// An error means the server could not be asked (unreachable, refused
// credentials); it never contains the password. One attempt each: bound
// ctx, and probe once the lock connection has shown the server is up.
//
// Options in u's own query and in migrun's PGOPTIONS (pgx reads it) are
// sent along, as the command's libpq would send them.
func Probe(ctx context.Context, u *dburl.URL) (Postgres, error) {
	if u.Adapter != dburl.PostgreSQL {
		return Postgres{}, ErrNotPostgres
	}
	cfg, err := dbconn.PostgresConfig(u)
	if err != nil {
		return Postgres{}, err
	}
	plain := cfg.Copy()
	cfg.RuntimeParams["options"] = dbconn.WithOptionsProbe(cfg.RuntimeParams["options"])

	conn, err := dbconn.ConnectPostgres(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return Postgres{}, ctx.Err()
		}
		refused := dbconn.ClassifyPostgres(err, cfg)
		// Is it the option? Ask again without it.
		c, perr := dbconn.ConnectPostgres(ctx, plain)
		if perr != nil {
			if ctx.Err() != nil {
				return Postgres{}, ctx.Err()
			}
			return Postgres{}, fmt.Errorf("probe %s: %w", dbconn.PostgresAddr(u), dbconn.ClassifyPostgres(perr, plain))
		}
		_ = c.Close(ctx)
		return FromProbe(dbconn.PostgresAddr(u), dbconn.OptionsProbe{Refused: refused}), nil
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var setting, versionNum []byte
	err = conn.QueryRow(ctx, "SELECT "+dbconn.OptionsProbeColumns).Scan(&setting, &versionNum)
	if err != nil {
		if ctx.Err() != nil {
			return Postgres{}, ctx.Err()
		}
		return Postgres{}, fmt.Errorf("probe %s: %w", dbconn.PostgresAddr(u), queryError(err))
	}
	got, err := dbconn.ReadOptionsProbe(setting, versionNum)
	if err != nil {
		return Postgres{}, fmt.Errorf("probe %s: %w", dbconn.PostgresAddr(u), err)
	}
	return FromProbe(dbconn.PostgresAddr(u), got), nil
}

// FromProbe is what a probe connection to addr found (here, or on the
// lock's own connection: lock.OptionsProber), as the command's sessions
// are told.
func FromProbe(addr string, p dbconn.OptionsProbe) Postgres {
	switch {
	case p.Refused != nil:
		return Postgres{Why: fmt.Sprintf("%s refuses connections that carry startup options (%v)", addr, p.Refused)}
	case !p.Applied:
		return Postgres{Why: fmt.Sprintf("%s accepts startup options but does not apply them (a pooler, e.g. PgBouncer with ignore_startup_parameters = options)", addr)}
	}
	return Postgres{OptionsReach: true, Version: p.Version}
}

func queryError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	return errors.New(dbconn.LastLine(err))
}
