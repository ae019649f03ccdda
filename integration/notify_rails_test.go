package integration

import (
	"reflect"
	"strings"
	"testing"

	"github.com/migrun/migrun/rails"
)

// TestRailsFailedMigrationShapes: what the installed Rails really prints
// when the third of three migrations raises is what rails.ParseRun reads:
// the two that ran, and the one that failed (from its "migrating" line,
// or with VERBOSE=false from the backtrace). The termination log and the
// Slack message start with the headline.
func TestRailsFailedMigrationShapes(t *testing.T) {
	tests := []struct {
		kind, verbose string
		done          []string
		failed        rails.Migration
	}{
		{"postgresql", "", []string{"20240101000000 CreateUsers migrated", "20240102000000 AddIndexToUsersEmail migrated"},
			rails.Migration{Version: "20240301000000", Name: "AddFlagAndExplode", Action: "migrating"}},
		{"mariadb", "", []string{"20240101000000 CreateUsers migrated", "20240102000000 AddIndexToUsersEmail migrated"},
			rails.Migration{Version: "20240301000000", Name: "AddFlagAndExplode", Action: "migrating"}},
		{"postgresql", "false", nil, rails.Migration{Version: "20240301000000", Name: "AddFlagAndExplode"}},
	}
	all := servers(t)
	for _, tt := range tests {
		t.Run(tt.kind+"/verbose="+tt.verbose, func(t *testing.T) {
			t.Parallel()
			srv := all[tt.kind]
			app := railsApp(t)
			_, url := srv.CreateDatabase(t)
			addMigration(t, app, "20240301000000", "add_flag_and_explode",
				"  def up\n    add_column :users, :flag, :boolean\n    raise %q{kaboom}\n  end")
			rc, hook := newSlackReceiver(t)
			env := railsEnv(url)
			env["SLACK_WEBHOOK_URL"] = hook
			env["MIGRUN_APP"] = "shop"
			if tt.verbose != "" {
				env["VERBOSE"] = tt.verbose
			}
			res := invocation{dir: app, env: env}.run(t)
			if res.status != 1 {
				t.Fatalf("exit status %d, want 1:\n%s", res.status, res.all())
			}

			done, failed := rails.ParseRun(res.stdout + res.stderr)
			var got []string
			for _, m := range done {
				got = append(got, m.Version+" "+m.Name+" "+m.Action)
			}
			if !reflect.DeepEqual(got, tt.done) {
				t.Errorf("done %q, want %q\n%s", got, tt.done, res.stdout)
			}
			if failed == nil || *failed != tt.failed {
				t.Errorf("failed %+v, want %+v\n%s%s", failed, tt.failed, res.stdout, res.stderr)
			}

			const headline = "DB migration failed in production (shop)\n"
			if !strings.HasPrefix(res.termination, headline) {
				t.Errorf("termination log:\n%s", res.termination)
			}
			msgs, raw := rc.all()
			if len(msgs) != 1 || !strings.HasPrefix(msgs[0].Text, headline+"DB migration result: failed (exit 1)") {
				t.Errorf("slack:\n%s", raw)
			}
		})
	}
}
