package rails

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseMigrations(t *testing.T) {
	tests := []struct {
		name   string
		output string
		want   []Migration
	}{
		{name: "nothing pending", output: "", want: nil},
		{
			name: "two applied",
			output: "== 20240101000000 CreateUsers: migrating ======================================\n" +
				"-- create_table(:users)\n   -> 0.0045s\n" +
				"== 20240101000000 CreateUsers: migrated (0.0046s) =============================\n\n" +
				"== 20240202000000 AddIndexToUsersEmail: migrating =============================\n" +
				"-- add_index(:users, :email, {:algorithm=>:concurrently})\n   -> 0.0102s\n" +
				"== 20240202000000 AddIndexToUsersEmail: migrated (0.0103s) ====================\n\n",
			want: []Migration{
				{Version: "20240101000000", Name: "CreateUsers", Action: "migrated", Duration: 4600 * time.Microsecond},
				{Version: "20240202000000", Name: "AddIndexToUsersEmail", Action: "migrated", Duration: 10300 * time.Microsecond},
			},
		},
		{
			name:   "reverted, CRLF",
			output: "== 20240101000000 CreateUsers: reverting ======\r\n== 20240101000000 CreateUsers: reverted (0.0020s) ======\r\n",
			want:   []Migration{{Version: "20240101000000", Name: "CreateUsers", Action: "reverted", Duration: 2 * time.Millisecond}},
		},
		{
			name: "failed migration is not applied",
			output: "== 20240303000000 Explode: migrating ==========================================\n" +
				"rails aborted!\nStandardError: An error has occurred, this and all later migrations canceled:\n\nboom\n",
			want: nil,
		},
		{
			name:   "look-alikes inside other text",
			output: "echo == 1 X: migrated (1s) ==\n  == 20240101000000 CreateUsers: migrated (0.1s) ==\n== abc X: migrated (0.1s) ==\n",
			want:   nil,
		},
		{
			name:   "very long line does not stop the scan",
			output: strings.Repeat("x", 70000) + "\n== 1 A: migrated (0.5000s) ===\n",
			want:   []Migration{{Version: "1", Name: "A", Action: "migrated", Duration: 500 * time.Millisecond}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseMigrations(tt.output)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseMigrations() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Real output of `migrun run` around `bundle exec rails db:migrate` (Rails
// 6.1, Ruby 3.1; stdout synced, stderr after it), a third migration raising
// after an add_column.
const (
	railsFailedPostgres = "== 20240101000000 CreateUsers: migrating ======================================\n" +
		"-- create_table(:users)\n   -> 0.0310s\n" +
		"== 20240101000000 CreateUsers: migrated (0.0314s) =============================\n\n" +
		"== 20240102000000 AddIndexToUsersEmail: migrating =============================\n" +
		"-- add_index(:users, :email, {:algorithm=>:concurrently})\n   -> 0.0107s\n" +
		"== 20240102000000 AddIndexToUsersEmail: migrated (0.0110s) ====================\n\n" +
		"== 20240301000000 Explode: migrating ==========================================\n" +
		"-- add_column(:users, :flag, :boolean)\n   -> 0.0034s\n" +
		railsAborted
	railsAborted = "rails aborted!\n" +
		"StandardError: An error has occurred, this and all later migrations canceled:\n\nkaboom\n" +
		"/tmp/app/db/migrate/20240301000000_explode.rb:4:in `up'\n\n" +
		"Caused by:\nkaboom\n" +
		"/tmp/app/db/migrate/20240301000000_explode.rb:4:in `up'\n" +
		"Tasks: TOP => db:migrate\n(See full trace by running task with --trace)\n"
	railsRollback = "== 20240102000000 AddIndexToUsersEmail: reverting =============================\n" +
		"-- remove_index(:users, :email, {:algorithm=>:concurrently})\n   -> 0.0927s\n" +
		"== 20240102000000 AddIndexToUsersEmail: reverted (0.1141s) ====================\n\n"
)

var (
	createUsers = Migration{Version: "20240101000000", Name: "CreateUsers", Action: "migrated", Duration: 31400 * time.Microsecond}
	addIndex    = Migration{Version: "20240102000000", Name: "AddIndexToUsersEmail", Action: "migrated", Duration: 11 * time.Millisecond}
	explode     = &Migration{Version: "20240301000000", Name: "Explode", Action: "migrating"}
)

func TestParseRun(t *testing.T) {
	long := "VeryLongMigrationNameThatPushesTheHeaderPastSeventyFiveCharacters"
	tests := []struct {
		name       string
		output     string
		done       []Migration
		unfinished *Migration
	}{
		{name: "nothing pending", output: ""},
		{name: "PostgreSQL: third migration raises", output: railsFailedPostgres,
			done: []Migration{createUsers, addIndex}, unfinished: explode},
		{name: "MariaDB: the same, without a transaction",
			output: strings.Replace(railsFailedPostgres, "this and all later", "all later", 1),
			done:   []Migration{createUsers, addIndex}, unfinished: explode},
		{name: "Ruby buffering: stderr before stdout", output: railsAborted + strings.TrimSuffix(railsFailedPostgres, railsAborted),
			done: []Migration{createUsers, addIndex}, unfinished: explode},
		{name: "all applied", output: railsFailedPostgres[:strings.Index(railsFailedPostgres, "== 20240301000000")],
			done: []Migration{createUsers, addIndex}},
		{name: "rollback", output: railsRollback,
			done: []Migration{{Version: "20240102000000", Name: "AddIndexToUsersEmail", Action: "reverted", Duration: 114100 * time.Microsecond}}},
		{name: "rollback stopped by a signal", output: "== 20240102000000 AddIndexToUsersEmail: reverting =============================\n-- remove_index(:users, :email)\n",
			unfinished: &Migration{Version: "20240102000000", Name: "AddIndexToUsersEmail", Action: "reverting"}},
		{name: "killed while migrating: no backtrace", output: "== 20240301000000 AddIndexOnHugeTable: migrating ============================\n-- add_index(:events, :created_at)\n",
			unfinished: &Migration{Version: "20240301000000", Name: "AddIndexOnHugeTable", Action: "migrating"}},
		{name: "header past 75 characters has no padding",
			output:     "== 20240301000000 " + long + ": migrating \n",
			unfinished: &Migration{Version: "20240301000000", Name: long, Action: "migrating"}},
		{name: "VERBOSE=false: only the backtrace names it", output: railsAborted,
			unfinished: &Migration{Version: "20240301000000", Name: "Explode"}},
		{name: "Ruby 3.4 backtrace", output: "rails aborted!\nStandardError: boom\n/app/db/migrate/20240301000000_add_api_key.rb:4:in 'AddApiKey#up'\n",
			unfinished: &Migration{Version: "20240301000000", Name: "AddApiKey"}},
		{name: "header before a gap in the capture is not trusted",
			output: "== 20240101000000 Backfill: migrating ===\n" + "\n[... migrun: 123456 bytes omitted ...]\n" + "Tasks: TOP => db:migrate\n"},
		{name: "header after the gap is",
			output:     "== 20240101000000 Backfill: migrating ===\n" + "\n[... migrun: 1 bytes omitted ...]\n" + "== 20240102000000 Next: migrating ===\nboom\n",
			unfinished: &Migration{Version: "20240102000000", Name: "Next", Action: "migrating"}},
		{name: "backtrace after a gap still names it",
			output:     "== 20240101000000 Backfill: migrating ===\n" + "\n[... migrun: 99 bytes omitted ...]\n" + railsAborted,
			unfinished: &Migration{Version: "20240301000000", Name: "Explode"}},
		{name: "a backtrace into a finished migration is not the failed one",
			output: "== 20240301000000 Explode: migrated (0.1000s) ===\n/app/db/migrate/20240301000000_explode.rb:4:in `up'\n",
			done:   []Migration{{Version: "20240301000000", Name: "Explode", Action: "migrated", Duration: 100 * time.Millisecond}}},
		{name: "deprecation warnings are not backtraces",
			output: "DEPRECATION WARNING: x (called from change at /app/db/migrate/20240301000000_explode.rb:3)\n"},
		{name: "CRLF", output: "== 1 A: migrating ===\r\n== 1 A: migrated (0.5s) ===\r\n== 2 B: migrating ===\r\n",
			done: []Migration{{Version: "1", Name: "A", Action: "migrated", Duration: 500 * time.Millisecond}}, unfinished: &Migration{Version: "2", Name: "B", Action: "migrating"}},
		{name: "a duration at the edge of time.Duration is unknown, not negative", output: "== 1 A: migrated (9223372036.854775807s) ===\n",
			done: []Migration{{Version: "1", Name: "A", Action: "migrated"}}},
		{name: "look-alikes inside other text", output: "echo == 1 X: migrating ==\n  == 2 Y: migrating ==\n== abc Z: migrating ==\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, unfinished := ParseRun(tt.output)
			if !reflect.DeepEqual(done, tt.done) {
				t.Errorf("done = %+v, want %+v", done, tt.done)
			}
			if !reflect.DeepEqual(unfinished, tt.unfinished) {
				t.Errorf("unfinished = %+v, want %+v", unfinished, tt.unfinished)
			}
			if got := ParseMigrations(tt.output); !reflect.DeepEqual(got, done) {
				t.Errorf("ParseMigrations() = %+v, want ParseRun's %+v", got, done)
			}
		})
	}
}

func FuzzParseMigrations(f *testing.F) {
	f.Add("== 20240101000000 CreateUsers: migrated (0.0046s) ====\n")
	f.Add("== 1 A: reverted (1s)\n== 2 B: migrating ==\n")
	f.Add(railsFailedPostgres)
	f.Add(railsAborted)
	f.Add("== 1 A: migrating ==\n[... migrun: 5 bytes omitted ...]\n== 1 A: migrated (1s) ==\n")
	f.Fuzz(func(t *testing.T, output string) {
		done, unfinished := ParseRun(output)
		if got := ParseMigrations(output); !reflect.DeepEqual(got, done) {
			t.Fatalf("ParseMigrations() = %+v, ParseRun() = %+v", got, done)
		}
		if u := unfinished; u != nil {
			if u.Version == "" || u.Name == "" || !strings.Contains(output, u.Version) || u.Duration != 0 {
				t.Fatalf("unfinished migration %+v not grounded in output", u)
			}
			if u.Action != "migrating" && u.Action != "reverting" && u.Action != "" {
				t.Fatalf("unfinished with action %q", u.Action)
			}
		}
		for _, m := range done {
			if m.Version == "" || m.Name == "" || !strings.Contains(output, m.Version+" "+m.Name) && !strings.Contains(output, m.Version) {
				t.Fatalf("migration %+v not grounded in output", m)
			}
			if m.Action != "migrated" && m.Action != "reverted" {
				t.Fatalf("bad action %q", m.Action)
			}
			if m.Duration < 0 {
				t.Fatalf("negative duration %v", m.Duration)
			}
		}
	})
}
