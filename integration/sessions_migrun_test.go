package integration

import (
	"strings"
	"testing"

	"github.com/migrun/migrun/internal/testdb"
)

// TestSessionsThroughMigrun: run by migrun, the Rails migration's own
// database session gets the dead-client bound derived from
// MIGRUN_DEAD_HOLDER_TIMEOUT and the DDL lock timeout, on both servers; and
// through PgBouncer's transaction pooling, which refuses startup options,
// migrun leaves PGOPTIONS alone (the migration still connects) and says so.
func TestSessionsThroughMigrun(t *testing.T) {
	pg, my := testdb.Postgres(t), testdb.MariaDB(t)
	tests := []struct {
		name   string
		srv    *testdb.Server
		pooled bool
		query  string
		want   map[string]string
		note   string // in migrun's log
	}{
		{name: "postgresql", srv: pg, query: "SHOW #{name}",
			want: map[string]string{"tcp_user_timeout": "28000", "tcp_keepalives_idle": "14", "lock_timeout": "3s", "statement_timeout": "0"}},
		{name: "mariadb", srv: my, query: "SELECT @@SESSION.#{name}",
			want: map[string]string{"wait_timeout": "2147483", "lock_wait_timeout": "3"}}, // Rails' own wait_timeout: migrun sets none (see sessions.Apply)
		{name: "postgresql through PgBouncer", srv: pg, pooled: true, query: "SHOW #{name}",
			want: map[string]string{"tcp_user_timeout": "0", "lock_timeout": "0"}, note: "PGOPTIONS not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			names := make([]string, 0, len(tt.want))
			for k := range tt.want {
				names = append(names, k)
			}
			addMigration(t, app, "20240301000000", "show_settings", showSettings(tt.query, names...))
			db, url := tt.srv.CreateDatabase(t)
			env := railsEnv(url)
			if tt.pooled {
				env["DATABASE_URL"] = tt.srv.PgBouncer(t, "transaction", 2).URL(db)
				env["MIGRUN_LOCK_MODE"] = "transaction"
			}
			env["MIGRUN_DDL_LOCK_TIMEOUT"] = "3s"
			env["MIGRUN_DEAD_HOLDER_TIMEOUT"] = "30s" // the default, which the numbers above follow
			res := invocation{dir: app, env: env}.run(t)
			if res.status != 0 {
				t.Fatalf("exit %d:\n%s%s", res.status, res.stdout, res.stderr)
			}
			assertValues(t, sessionValues(res.stdout), tt.want, res.stdout, res.stderr)
			if tt.note != "" && !strings.Contains(res.stderr, tt.note) {
				t.Errorf("migrun does not say %q:\n%s", tt.note, res.stderr)
			}
			assertNoSecret(t, tt.srv.Password(), res)
		})
	}
}
