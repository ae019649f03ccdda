package report

import "testing"

// TestExitStatus: every outcome has one exit status and one severity, and a
// failure never exits 0.
func TestExitStatus(t *testing.T) {
	tests := []struct {
		r        Result
		status   int
		severity Severity
	}{
		{Result{Outcome: Succeeded}, 0, OK},
		{Result{Outcome: Skipped}, 0, OK},
		{Result{Outcome: Current}, 0, OK},
		{Result{Outcome: Succeeded, Lock: Lock{Lost: "backend terminated"}}, 0, Warning},
		{Result{Outcome: Failed, ExitCode: 1}, 1, Failure},
		{Result{Outcome: Failed, ExitCode: 3}, 3, Failure},
		{Result{Outcome: Failed, ExitCode: 0}, ExitSoftware, Failure},
		{Result{Outcome: Failed, ExitCode: -1}, ExitSoftware, Failure},
		{Result{Outcome: Killed, ExitCode: -1, Signal: 15}, 143, Failure},
		{Result{Outcome: Killed, ExitCode: -1, Signal: 9}, 137, Failure},
		{Result{Outcome: Stopped, Signal: 2}, 130, Failure},
		{Result{Outcome: Stopped}, ExitSoftware, Failure},
		{Result{Outcome: NotFound}, 127, Failure},
		{Result{Outcome: NotExecutable}, 126, Failure},
		{Result{Outcome: LockTimeout}, 75, Warning},
		{Result{Outcome: StillPending}, 75, Warning},
		{Result{Outcome: LockLost, Signal: 15}, 75, Failure},
		{Result{Outcome: Unreachable}, 69, Failure},
		{Result{Outcome: ConfigError}, 64, Failure},
		{Result{Outcome: InternalError}, 70, Failure},
		{Result{Outcome: Healthy}, 0, OK},
		{Result{Outcome: Unhealthy}, 1, Failure},
		{Result{Outcome: NotifyTest}, 0, OK},
		{Result{Outcome: "made up"}, 70, Failure},
	}
	for _, tt := range tests {
		if got := tt.r.ExitStatus(); got != tt.status {
			t.Errorf("%+v: ExitStatus() = %d, want %d", tt.r, got, tt.status)
		}
		if got := tt.r.Severity(); got != tt.severity {
			t.Errorf("%+v: Severity() = %d, want %d", tt.r, got, tt.severity)
		}
		if tt.r.Severity() != OK && tt.r.ExitStatus() == 0 && tt.r.Lock.Lost == "" {
			t.Errorf("%+v: a failure exits 0", tt.r)
		}
	}
	for o := range outcomes {
		if (Result{Outcome: o}).Describe() == "" {
			t.Errorf("outcome %q has no description", o)
		}
	}
}
