package integration

import (
	"strings"
	"testing"
)

// TestLockTimeoutNamesHolder: a runner that gives up waiting says who
// held the lock (the holder's Pod, from its session's identity) in its
// log, at once and in its progress lines, in the termination log and in
// Slack; and never the password or the webhook URL.
func TestLockTimeoutNamesHolder(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, url := srv.CreateDatabase(t)
			holder, release := holdLock(t, map[string]string{"DATABASE_URL": url, "POD_NAME": "holder-pod-7"})
			slack, hook := newSlackReceiver(t)
			late := invocation{
				env:  map[string]string{"DATABASE_URL": url, "POD_NAME": "late-pod", "SLACK_WEBHOOK_URL": hook},
				args: []string{"run", "--lock-timeout=4s", "--progress-interval=1s", "--", "true"},
			}.run(t)
			release()
			if res := holder.wait(t); res.status != 0 {
				t.Errorf("holder exited %d:\n%s", res.status, res.stderr)
			}
			if late.status != 75 {
				t.Fatalf("late runner exited %d, want 75:\n%s", late.status, late.stderr)
			}
			// The holder's identity: PostgreSQL's application_name; on
			// MariaDB (performance_schema off) its user and address.
			names := "migrun holder-pod-7 "
			if kind == "mariadb" {
				names = "(user migrun, client 127.0.0.1:"
			}
			var first, progress []string
			for _, line := range strings.Split(late.stderr, "\n") {
				switch {
				case strings.Contains(line, `msg="lock is held by another runner; waiting"`):
					first = append(first, line)
				case strings.Contains(line, `msg="still waiting for the lock"`):
					progress = append(progress, line)
				}
			}
			if len(first) != 1 || !strings.Contains(first[0], names) {
				t.Errorf("want one first line naming the holder (%q), got %q", names, first)
			}
			if len(progress) < 2 {
				t.Errorf("want progress lines, got %d:\n%s", len(progress), late.stderr)
			}
			for _, line := range progress {
				if !strings.Contains(line, names) || !strings.Contains(line, " waited=") || !strings.Contains(line, " left=") {
					t.Errorf("progress line without holder, waited or left: %s", line)
				}
			}
			if !strings.Contains(late.termination, "lock not acquired in 4s; held by ") || !strings.Contains(late.termination, names) {
				t.Errorf("termination log does not name the holder:\n%s", late.termination)
			}
			msgs, raw := slack.all()
			if len(msgs) != 1 || !strings.Contains(raw, "held by ") || !strings.Contains(raw, names) {
				t.Errorf("Slack messages (%d) do not name the holder:\n%s", len(msgs), raw)
			}
			assertNoSecret(t, srv.Password(), late)
			assertNoSecret(t, hook, late)
			if strings.Contains(raw, srv.Password()) {
				t.Errorf("Slack got the password")
			}
		})
	}
}
