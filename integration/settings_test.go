package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/migrun/migrun/internal/testdb"
)

// TestDatabaseParts: the database given as separate settings (libpq's
// PG* variables, MySQL's MYSQL_* ones) with a password full of characters a
// URL would need escaped: migrun connects, locks and runs, and never prints
// the password.
func TestDatabaseParts(t *testing.T) {
	const password = `p@ss:/?#%&=+ 'w"rd\`
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db, _ := srv.CreateDatabase(t)
			user := "parts_" + db
			var env map[string]string
			if kind == testdb.KindPostgreSQL {
				srv.Exec(t, "", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", user, strings.ReplaceAll(password, "'", "''")))
				srv.Exec(t, "", fmt.Sprintf("GRANT ALL ON DATABASE %s TO %s", db, user))
				env = map[string]string{"PGHOST": srv.Host(), "PGPORT": strconv.Itoa(srv.Port()), "PGUSER": user,
					"PGPASSWORD": password, "PGDATABASE": db, "PGSSLMODE": "disable"}
			} else {
				quoted := strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(password)
				srv.Exec(t, "", fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, quoted))
				srv.Exec(t, "", fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%'", db, user))
				env = map[string]string{"MYSQL_HOST": srv.Host(), "MYSQL_TCP_PORT": strconv.Itoa(srv.Port()), "MYSQL_USER": user,
					"MYSQL_PWD": password, "MYSQL_DATABASE": db}
			}
			res := invocation{env: env, args: []string{"run", "--", "sh", "-c", "echo migrated"}}.run(t)
			if res.status != 0 || !strings.Contains(res.stderr, "lock acquired") {
				t.Fatalf("exit %d:\n%s", res.status, res.stderr)
			}
			assertNoSecret(t, password, res)
		})
	}
}
