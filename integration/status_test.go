package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// statusJSON runs `migrun status --format json` and decodes its answer.
func statusJSON(t *testing.T, inv invocation) (result, map[string]any) {
	t.Helper()
	inv.args = append([]string{"status", "--format", "json"}, inv.args...)
	res := inv.run(t)
	var doc map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("status exited %d with no JSON: %v\nstdout:\n%s\nstderr:\n%s", res.status, err, res.stdout, res.stderr)
	}
	return res, doc
}

// field reads a document's value at a dotted path.
func field(doc map[string]any, path string) any {
	var v any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// wantFields checks a document field by field.
func wantFields(t *testing.T, doc map[string]any, want map[string]any) {
	t.Helper()
	for path, w := range want {
		if got := field(doc, path); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s = %v, want %v", path, got, w)
		}
	}
}

// setting finds one setting's report by variable.
func setting(t *testing.T, doc map[string]any, variable string) map[string]any {
	t.Helper()
	list, _ := doc["settings"].([]any)
	for _, s := range list {
		if m, _ := s.(map[string]any); m["variable"] == variable {
			return m
		}
	}
	t.Fatalf("no setting %s in the status", variable)
	return nil
}

// TestStatusHealthy: a migrated app on a reachable database, Slack and
// the result webhook configured: exit 0 and every field says so; the
// test message reaches both; then, with the lock held, status names the
// holder and still exits 0 (a held lock is a deploy under way, not a
// fault). No secret anywhere.
func TestStatusHealthy(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			db, url := srv.CreateDatabase(t)
			if res := (invocation{dir: app, env: railsEnv(url)}).run(t); res.status != 0 {
				t.Fatalf("migrate exited %d:\n%s", res.status, res.stderr)
			}
			slack, hook := newSlackReceiver(t)
			results, resultURL := newResultReceiver(t)
			env := railsEnv(url)
			env["SLACK_WEBHOOK_URL"] = hook
			env["MIGRUN_WEBHOOK_URL"] = resultURL
			env["MIGRUN_APP"] = "rails-app"
			res, doc := statusJSON(t, invocation{dir: app, env: env, args: []string{"--notify-test", "--progress-interval=7s"}})
			if res.status != 0 {
				t.Errorf("status exited %d, want 0:\n%s\n%s", res.status, res.stdout, res.stderr)
			}
			adapter := "postgresql"
			if kind == "mariadb" {
				adapter = "mysql2"
			}
			wantFields(t, doc, map[string]any{
				"ok": true, "exit_status": 0, "problems": []any{},
				"database.adapter": adapter, "database.reachable": true,
				"lock.mode": "session", "lock.name": db, "lock.state": "free",
				"migrations.checked": true, "migrations.current": true, "migrations.pending": []any{},
				"notifications.slack": true, "notifications.slack_via": "webhook", "notifications.webhook": true,
				"notifications.policy": "always", "notifications.test.slack": "sent", "notifications.test.webhook": "sent",
			})
			if v, _ := field(doc, "database.server_version").(string); v == "" {
				t.Errorf("database.server_version is empty")
			}
			if u, _ := field(doc, "database.url").(string); !strings.Contains(u, db) {
				t.Errorf("database.url = %q, want the database", u)
			}
			for variable, want := range map[string]map[string]any{
				"MIGRUN_DATABASE_URL":      {"value": "[REDACTED]", "source": "variable", "from": "DATABASE_URL", "secret": true},
				"SLACK_WEBHOOK_URL":        {"value": "[REDACTED]", "source": "variable", "from": "SLACK_WEBHOOK_URL"},
				"MIGRUN_PROGRESS_INTERVAL": {"value": "7s", "source": "flag", "from": "--progress-interval"},
				"MIGRUN_LOCK_TIMEOUT":      {"value": "5m0s", "source": "variable"},
				"MIGRUN_RETRIES":           {"value": "3", "source": "default"},
				"MIGRUN_LOCK_NAME":         {"value": db, "source": "derived"},
				"MIGRUN_ENVIRONMENT":       {"value": "production", "source": "variable", "from": "RAILS_ENV"},
			} {
				s := setting(t, doc, variable)
				for k, w := range want {
					if fmt.Sprint(s[k]) != fmt.Sprint(w) {
						t.Errorf("setting %s: %s = %v, want %v", variable, k, s[k], w)
					}
				}
			}
			msgs, raw := slack.all()
			if len(msgs) != 1 || !strings.Contains(msgs[0].Text, "notification test") {
				t.Errorf("Slack got %d messages, want the test message:\n%s", len(msgs), raw)
			}
			if got := results.last(t)["outcome"]; got != "notification test" {
				t.Errorf("the result webhook got outcome %v", got)
			}

			text := invocation{dir: app, env: env, args: []string{"status"}}.run(t)
			if text.status != 0 || !strings.Contains(text.stdout, "migrun status: all is well (exit 0)") || !strings.Contains(text.stdout, "none pending") {
				t.Errorf("text status exited %d:\n%s%s", text.status, text.stdout, text.stderr)
			}

			holdEnv := railsEnv(url)
			holdEnv["POD_NAME"] = "holder-pod-9"
			holder, release := holdLock(t, holdEnv)
			held, heldDoc := statusJSON(t, invocation{dir: app, env: env})
			heldText := invocation{dir: app, env: env, args: []string{"status"}}.run(t)
			release()
			if res := holder.wait(t); res.status != 0 {
				t.Errorf("holder exited %d:\n%s", res.status, res.stderr)
			}
			names := "migrun holder-pod-9 "
			if kind == "mariadb" {
				names = "(user migrun, client 127.0.0.1:"
			}
			wantFields(t, heldDoc, map[string]any{"ok": true, "exit_status": 0, "lock.state": "held"})
			if h, _ := field(heldDoc, "lock.holder").(string); !strings.Contains(h, names) {
				t.Errorf("lock.holder = %q, want it to name the holder (%s)", h, names)
			}
			if held.status != 0 || heldText.status != 0 || !strings.Contains(heldText.stdout, "held by ") || !strings.Contains(heldText.stdout, names) {
				t.Errorf("held lock: exit %d, %d:\n%s", held.status, heldText.status, heldText.stdout)
			}
			for _, r := range []result{res, text, held, heldText} {
				assertNoSecret(t, srv.Password(), r)
				assertNoSecret(t, hook, r)
				assertNoSecret(t, "WebhookSecret0123", r)
			}
		})
	}
}

// TestStatusPending: migrations not yet applied: exit 1, each pending
// version listed, the problem said.
func TestStatusPending(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			_, url := srv.CreateDatabase(t)
			res, doc := statusJSON(t, invocation{dir: app, env: railsEnv(url)})
			if res.status != 1 {
				t.Errorf("status exited %d, want 1:\n%s", res.status, res.stderr)
			}
			wantFields(t, doc, map[string]any{"ok": false, "exit_status": 1, "database.reachable": true,
				"lock.state": "free", "migrations.checked": true, "migrations.current": false})
			var versions []string
			pending, _ := field(doc, "migrations.pending").([]any)
			for _, p := range pending {
				m, _ := p.(map[string]any)
				versions = append(versions, fmt.Sprint(m["database"], " ", m["version"], " ", m["name"]))
			}
			if got := strings.Join(versions, ", "); got != "primary 20240101000000 CreateUsers, primary 20240102000000 AddIndexToUsersEmail" {
				t.Errorf("pending = %s", got)
			}
			if p := fmt.Sprint(doc["problems"]); !strings.Contains(p, "2 migrations pending") {
				t.Errorf("problems = %s", p)
			}
			assertNoSecret(t, srv.Password(), res)
		})
	}
}

// TestStatusUnreachable: nothing listens: exit 1 at once (not after the
// connect timeout), the migrations not checked, the password nowhere.
func TestStatusUnreachable(t *testing.T) {
	for _, scheme := range []string{"postgres", "mysql2"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			url := fmt.Sprintf("%s://app:Sup3rSecretPw@127.0.0.1:%d/app", scheme, closedPort(t))
			start := time.Now()
			res, doc := statusJSON(t, invocation{env: map[string]string{"DATABASE_URL": url, "MIGRUN_CONNECT_TIMEOUT": "60s"}})
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("status took %s", took)
			}
			if res.status != 1 {
				t.Errorf("status exited %d, want 1:\n%s", res.status, res.stderr)
			}
			wantFields(t, doc, map[string]any{"ok": false, "exit_status": 1, "database.reachable": false,
				"lock.state": "unknown", "migrations.checked": false})
			if p := fmt.Sprint(doc["problems"]); !strings.Contains(p, "database unreachable") {
				t.Errorf("problems = %s", p)
			}
			text := invocation{env: map[string]string{"DATABASE_URL": url}, args: []string{"status"}}.run(t)
			if text.status != 1 || !strings.Contains(text.stdout, "database unreachable") {
				t.Errorf("text: exit %d:\n%s", text.status, text.stdout)
			}
			assertNoSecret(t, "Sup3rSecretPw", res, text)
		})
	}
}

// TestStatusBadConfiguration: a bad setting is 64, said in one line
// (and as JSON when asked), with no secret.
func TestStatusBadConfiguration(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://app:Sup3rSecretPw@127.0.0.1:5432/app", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/HookSecret42"}
	for _, args := range [][]string{
		{"status", "--format", "json", "--lock-timeout", "5"},
		{"status", "--format", "yaml"},
		{"status", "--", "rails", "db:migrate"},
		{"status", "--database-url", "postgres://app:Sup3rSecretPw@[::1/app"},
	} {
		res := invocation{env: env, args: args}.run(t)
		if res.status != 64 || !strings.Contains(res.stderr, "migrun: ") {
			t.Errorf("%q: exit %d, want 64:\n%s", args, res.status, res.stderr)
		}
		if args[2] == "json" {
			var doc map[string]any
			if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || doc["exit_status"] != float64(64) || doc["ok"] != false {
				t.Errorf("%q: JSON %v %v:\n%s", args, doc, err, res.stdout)
			}
		}
		assertNoSecret(t, "Sup3rSecretPw", res)
		assertNoSecret(t, "HookSecret42", res)
	}
}
