package report

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/migrun/migrun/rails"
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		r    Result
		want string
	}{
		{Result{Outcome: Succeeded}, "succeeded"},
		{Result{Outcome: Failed, ExitCode: 1}, "failed (exit 1)"},
		{Result{Outcome: Killed, Signal: 15}, "killed by SIGTERM"},
		{Result{Outcome: Stopped, Signal: 2}, "stopped by SIGINT before the command ran"},
		{Result{Outcome: LockLost}, "lock lost; command stopped"},
		{Result{Outcome: LockTimeout, Lock: Lock{Timeout: 30 * time.Minute}}, "lock not acquired in 30m"},
		{Result{Outcome: Unreachable}, "database unreachable"},
		{Result{Outcome: Skipped}, "skipped (nothing pending)"},
		{Result{Outcome: ConfigError}, "configuration error"},
	}
	for _, tt := range tests {
		if got := tt.r.Describe(); got != tt.want {
			t.Errorf("Describe(%v) = %q, want %q", tt.r.Outcome, got, tt.want)
		}
	}
}

func TestSummary(t *testing.T) {
	base := Result{
		Outcome: Failed, ExitCode: 1, Duration: 1500 * time.Millisecond,
		Migrations:      []rails.Migration{{Version: "20240101000000", Name: "CreateUsers", Action: "migrated"}},
		FailedMigration: &rails.Migration{Version: "20240102000000", Name: "AddFlag", Action: "migrating"},
		Environment:     "production", App: "shop", Revision: "v1", Link: "https://argocd.example.com/applications/shop",
	}
	tests := []struct {
		name     string
		output   string
		contains []string
	}{
		{name: "short output kept whole", output: "rails aborted!\nboom\n", contains: []string{
			"DB migration failed in production (shop v1)\nmigrun: failed (exit 1), exit status 1, in 1.5s\n",
			"migrations: 20240101000000 CreateUsers migrated;\nfailed migration: 20240102000000 AddFlag (while migrating)\n",
			"link: https://argocd.example.com/applications/shop\n", "rails aborted!\nboom\n"}},
		{name: "long output keeps its tail", output: strings.Repeat("a", 10000) + "THE END", contains: []string{"THE END", "output (tail):"}},
		{name: "multibyte output is not split", output: strings.Repeat("é", 5000), contains: []string{"é"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.Output = tt.output
			got := r.Summary()
			if !strings.HasPrefix(got, r.Headline()+"\n") {
				t.Errorf("summary does not start with the headline:\n%s", got)
			}
			if len(got) > MaxSummary {
				t.Errorf("summary is %d bytes, want at most %d", len(got), MaxSummary)
			}
			if !utf8.ValidString(got) {
				t.Errorf("summary is not valid UTF-8")
			}
			for _, c := range tt.contains {
				if !strings.Contains(got, c) {
					t.Errorf("summary %q does not contain %q", got, c)
				}
			}
		})
	}
}

func TestSummaryHugeHeader(t *testing.T) {
	r := Result{Outcome: Succeeded, Err: strings.Repeat("x", 10000), Output: "tail"}
	if got := r.Summary(); len(got) > MaxSummary {
		t.Errorf("summary is %d bytes, want at most %d", len(got), MaxSummary)
	}
}

// TestAttemptLines: the attempts are listed when there were several, or
// one failed on the DDL lock timeout (its LockTimeout, not its wording).
func TestAttemptLines(t *testing.T) {
	failed := Attempt{ExitCode: 1, Reason: "failed (exit 1)"}
	timeout := Attempt{ExitCode: 1, LockTimeout: true, Reason: "lock timeout, blocked by pid 7: not retried: ..."}
	tests := []struct {
		attempts []Attempt
		want     []string
	}{
		{nil, nil},
		{[]Attempt{failed}, nil},
		{[]Attempt{{ExitCode: 1, Reason: "lock timeout as a word in a reason"}}, nil},
		{[]Attempt{timeout}, []string{"attempts: 1", "attempt 1: " + timeout.Reason}},
		{[]Attempt{timeout, failed}, []string{"attempts: 2", "attempt 1: " + timeout.Reason, "attempt 2: failed (exit 1)"}},
	}
	for _, tt := range tests {
		got := Result{Outcome: Failed, ExitCode: 1, Attempts: tt.attempts}.AttemptLines()
		if !slices.Equal(got, tt.want) {
			t.Errorf("AttemptLines(%+v) = %q, want %q", tt.attempts, got, tt.want)
		}
	}
}
