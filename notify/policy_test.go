package notify

import (
	"testing"
)

func TestPolicy(t *testing.T) {
	cases := []string{"success", "nothing pending", "skipped", "lock lost", "failure", "signal", "lock timeout", "unreachable", "config error"}
	tests := []struct {
		policy  Policy
		want    []bool // in the order of cases
		running bool
	}{
		{Always, []bool{true, true, true, true, true, true, true, true, true}, true},
		{Changes, []bool{true, false, false, true, true, true, true, true, true}, true},
		{Failures, []bool{false, false, false, true, true, true, true, true, true}, false},
		{Never, []bool{false, false, false, false, false, false, false, false, false}, false},
		{Policy(""), []bool{false, false, false, false, false, false, false, false, false}, false},
	}
	for _, tt := range tests {
		if got := tt.policy.WantsRunning(); got != tt.running {
			t.Errorf("Policy(%q).WantsRunning() = %v, want %v", tt.policy, got, tt.running)
		}
		for i, name := range cases {
			if got := tt.policy.Wants(results[name]); got != tt.want[i] {
				t.Errorf("Policy(%q).Wants(%s) = %v, want %v", tt.policy, name, got, tt.want[i])
			}
		}
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"always", Always, false},
		{"changes", Changes, false},
		{"failures", Failures, false},
		{"never", Never, false},
		{" Changes\n", Changes, false},
		{"NEVER", Never, false},
		{"", "", true},
		{"sometimes", "", true},
		{"failure", "", true},
	}
	for _, tt := range tests {
		got, err := ParsePolicy(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
