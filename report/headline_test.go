package report

import (
	"strings"
	"testing"
	"time"
)

// TestHeadline: every outcome has its headline, which says what happened
// and where on one bounded line and starts with "DB migration".
func TestHeadline(t *testing.T) {
	prod := Result{Environment: "production", App: "rails-app", Revision: "1.2.3"}
	with := func(o Outcome, f ...func(*Result)) Result {
		r := prod
		r.Outcome = o
		for _, f := range f {
			f(&r)
		}
		return r
	}
	tests := []struct {
		r    Result
		want string
	}{
		{with(Succeeded), "DB migration succeeded in production (rails-app 1.2.3)"},
		{with(Succeeded, func(r *Result) { r.Lock.Lost = "backend terminated" }), "DB migration succeeded in production (rails-app 1.2.3), but the lock was lost while it ran"},
		{with(Skipped), "DB migration skipped in production (rails-app 1.2.3): nothing pending"},
		{with(Failed, func(r *Result) { r.ExitCode = 1 }), "DB migration failed in production (rails-app 1.2.3)"},
		{with(Killed, func(r *Result) { r.Signal = 9 }), "DB migration killed by SIGKILL in production (rails-app 1.2.3)"},
		{with(Stopped, func(r *Result) { r.Signal = 15 }), "DB migration stopped by SIGTERM in production (rails-app 1.2.3) before the command ran"},
		{with(NotFound), "DB migration failed in production (rails-app 1.2.3): command not found"},
		{with(NotExecutable), "DB migration failed in production (rails-app 1.2.3): command not executable"},
		{with(LockLost), "DB migration stopped in production (rails-app 1.2.3): lock lost"},
		{with(LockTimeout, func(r *Result) { r.Lock.Timeout = 30 * time.Minute }), "DB migration: lock not acquired in 30m in production (rails-app 1.2.3)"},
		{with(Unreachable), "DB migration: database unreachable in production (rails-app 1.2.3)"},
		{with(ConfigError), "DB migration: configuration error in production (rails-app 1.2.3)"},
		{with(InternalError), "DB migration: migrun internal error in production (rails-app 1.2.3)"},
		{with(Current), "DB migration: nothing pending in production (rails-app 1.2.3)"},
		{with(StillPending), "DB migration: migrations still pending in production (rails-app 1.2.3)"},
		{with(Healthy), "DB migration: all is well in production (rails-app 1.2.3)"},
		{with(Unhealthy), "DB migration: something is wrong in production (rails-app 1.2.3)"},
		{with(NotifyTest), "DB migration: notification test from migrun status in production (rails-app 1.2.3)"},
		{with("rolled back"), "DB migration: rolled back in production (rails-app 1.2.3)"},
		{with(""), "DB migration: unknown outcome in production (rails-app 1.2.3)"},
		// What is not known is left out.
		{Result{Outcome: Succeeded, Environment: "staging"}, "DB migration succeeded in staging"},
		{Result{Outcome: LockTimeout, Environment: "production", App: "rails-app", Lock: Lock{Timeout: 30 * time.Minute}}, "DB migration: lock not acquired in 30m in production (rails-app)"},
		{Result{Outcome: Failed, Revision: "abc123"}, "DB migration failed (abc123)"},
		{Result{Outcome: Failed}, "DB migration failed"},
		// Values go on one line.
		{Result{Outcome: Failed, Environment: " prod\n\tus-east \x1b[31m"}, "DB migration failed in prod us-east"},
	}
	seen := map[Outcome]bool{}
	for _, tt := range tests {
		seen[tt.r.Outcome] = true
		if got := tt.r.Headline(); got != tt.want {
			t.Errorf("%q: Headline() =\n%q, want\n%q", tt.r.Outcome, got, tt.want)
		}
	}
	for o := range outcomes {
		if !seen[o] {
			t.Errorf("outcome %q has no headline test", o)
		}
	}
	if got, want := prod.RunningHeadline(), "DB migration running in production (rails-app 1.2.3)"; got != want {
		t.Errorf("RunningHeadline() = %q, want %q", got, want)
	}
}

func TestHeadlineIsBounded(t *testing.T) {
	long := strings.Repeat("é<\n", 10000)
	for o := range outcomes {
		r := Result{Outcome: o, Environment: long, App: long, Revision: long, Err: long, Lock: Lock{Lost: long}}
		h := r.Headline()
		if len(h) > 500 || strings.Contains(h, "\n") || !strings.HasPrefix(h, "DB migration") {
			t.Errorf("%q: headline of %d bytes: %.100q", o, len(h), h)
		}
	}
	if h := (Result{Outcome: Outcome(strings.Repeat("x\n", 1000))}).Headline(); len(h) > 200 || strings.Contains(h, "\n") {
		t.Errorf("unknown outcome: headline of %d bytes", len(h))
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Minute: "30m", time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		time.Second: "1s", 500 * time.Millisecond: "500ms", 0: "0s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
