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

func FuzzParseMigrations(f *testing.F) {
	f.Add("== 20240101000000 CreateUsers: migrated (0.0046s) ====\n")
	f.Add("== 1 A: reverted (1s)\n== 2 B: migrating ==\n")
	f.Fuzz(func(t *testing.T, output string) {
		for _, m := range ParseMigrations(output) {
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
