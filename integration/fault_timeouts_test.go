package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// timeoutsKeepAlive is longer than every timeout below: a lock session
// that kept the server's values would be idle past them between two
// keep-alive checks.
const timeoutsKeepAlive = 2 * time.Second

// serverTimeouts are what managed databases set and a lock session must
// survive. PostgreSQL's are role settings (ALTER ROLE … IN DATABASE … SET),
// MariaDB's global (SET GLOBAL), at their lowest useful values.
var (
	pgTimeouts = testdb.Settings{
		"idle_session_timeout":                "1s",
		"idle_in_transaction_session_timeout": "1s",
		"statement_timeout":                   "1s",
		"lock_timeout":                        "1s",
	}
	mariaDBTimeouts = testdb.Settings{
		"wait_timeout":        "1",
		"interactive_timeout": "1",
		"max_statement_time":  "1",
		"net_read_timeout":    "1",
		"net_write_timeout":   "1",
	}
)

type timeoutsRow struct {
	lock     lockCase
	settings testdb.Settings
}

func (r timeoutsRow) String() string {
	if len(r.settings) > 1 {
		return r.lock.String() + "/all"
	}
	for k := range r.settings {
		return r.lock.String() + "/" + k
	}
	return r.lock.String()
}

// TestFaultServerTimeouts: with each server timeout set low (PostgreSQL:
// each alone and all at once, in both lock modes; MariaDB: all at once, on
// a private server), a holder and two waiters run one after another, each
// command lasting three keep-alive intervals: no lock is lost, no commands
// overlap, every run exits 0.
func TestFaultServerTimeouts(t *testing.T) {
	t.Parallel()
	var rows []timeoutsRow
	for _, c := range lockCases[:2] {
		names := make([]string, 0, len(pgTimeouts))
		for k := range pgTimeouts {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			rows = append(rows, timeoutsRow{c, testdb.Settings{k: pgTimeouts[k]}})
		}
		rows = append(rows, timeoutsRow{c, pgTimeouts})
	}
	rows = append(rows, timeoutsRow{lockCases[2], mariaDBTimeouts})

	concurrently(t, rows, func(t *testing.T, row timeoutsRow) {
		var url string
		if row.lock.kind == testdb.KindPostgreSQL {
			srv := testdb.Postgres(t)
			var db string
			db, url = srv.CreateDatabase(t)
			srv.SetRoleSettings(t, db, row.settings)
		} else {
			srv := startServers(t, []string{testdb.KindMariaDB}, testdb.Options{})[0]
			_, url = srv.CreateDatabase(t)
			srv.SetGlobal(t, row.settings)
		}
		env := merge(row.lock.env(), faults{keepAlive: timeoutsKeepAlive}.env(), map[string]string{"DATABASE_URL": url})
		seconds := fmt.Sprint((3 * timeoutsKeepAlive).Seconds())

		runners := []marked{newMarked(t, "runner 1"), newMarked(t, "runner 2"), newMarked(t, "runner 3")}
		var started []*running
		for i, m := range runners {
			r := invocation{env: env, args: m.waiterArgs(seconds)}.startFault(t, nil)
			if i == 0 {
				m.waitStarted(t)
			} else {
				waitForWaiting(t, m.name, r)
			}
			started = append(started, r)
		}
		deadline := time.Now().Add(2 * time.Minute)
		var spans []span
		for i, r := range started {
			res := r.waitBounded(t, runners[i].name, deadline)
			assertClean(t, runners[i].name, res)
			if s := runners[i].span(t); !s.ended {
				t.Errorf("%s's command did not run to its end: %s", runners[i].name, strings.TrimSpace(res.stderr))
			} else {
				spans = append(spans, s)
			}
		}
		assertSequential(t, spans...)
	})
}
