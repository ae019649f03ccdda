package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slack-go/slack"
)

// slackReceiver stands in for a Slack incoming webhook.
type slackReceiver struct {
	mu       sync.Mutex
	messages []slack.WebhookMessage
	raw      []string
}

func newSlackReceiver(t *testing.T) (*slackReceiver, string) {
	rc := &slackReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m slack.WebhookMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook payload is not JSON: %v\n%s", err, body)
		}
		rc.mu.Lock()
		rc.messages = append(rc.messages, m)
		rc.raw = append(rc.raw, string(body))
		rc.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return rc, srv.URL + "/services/T0000/B0000/WebhookSecret0123"
}

func (rc *slackReceiver) all() ([]slack.WebhookMessage, string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]slack.WebhookMessage(nil), rc.messages...), strings.Join(rc.raw, "\n")
}

// TestRailsSlack: real Rails migrations under migrun, reported to a local
// stand-in for Slack, for success, nothing pending and failure; with the
// changes policy, nothing pending posts nothing.
func TestRailsSlack(t *testing.T) {
	srv := servers(t)["postgresql"]
	app := railsApp(t)
	_, url := srv.CreateDatabase(t)
	rc, hook := newSlackReceiver(t)
	env := railsEnv(url)
	env["SLACK_WEBHOOK_URL"] = hook
	env["SLACK_CHANNEL"] = "#deploy_channel"
	env["MIGRUN_APP"] = "shop"
	env["MIGRUN_REVISION"] = "v1.2.3"

	first := invocation{dir: app, env: env}.run(t)
	changesOnly := map[string]string{"MIGRUN_NOTIFY": "changes"}
	for k, v := range env {
		changesOnly[k] = v
	}
	quiet := invocation{dir: app, env: changesOnly}.run(t)
	addMigration(t, app, "20240301000000", "explode", "  def up\n    raise %q{kaboom <!channel> ``` \"quoted\"}\n  end")
	failed := invocation{dir: app, env: env}.run(t)
	if first.status != 0 || quiet.status != 0 || failed.status != 1 {
		t.Fatalf("statuses %d %d %d:\n%s", first.status, quiet.status, failed.status, failed.stderr)
	}

	msgs, raw := rc.all()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2 (the changes policy skips the empty run):\n%s", len(msgs), raw)
	}
	ok, bad := msgs[0], msgs[1]
	if !strings.HasPrefix(ok.Text, "DB migration succeeded in production (shop v1.2.3)\nDB migration result: succeeded\n```") || !strings.Contains(ok.Text, "CreateUsers: migrated") {
		t.Errorf("success text:\n%s", ok.Text)
	}
	if ok.Channel != "#deploy_channel" || ok.Attachments[0].Color != "good" {
		t.Errorf("success message %+v", ok)
	}
	if !strings.Contains(raw, "20240101000000 CreateUsers (migrated)") || !strings.Contains(raw, "v1.2.3") {
		t.Errorf("success details missing:\n%s", raw)
	}
	if bad.Attachments[0].Color != "danger" || bad.Attachments[0].Fields[0].Value != "failed (exit 1)" {
		t.Errorf("failure message %+v", bad.Attachments)
	}
	if !strings.HasPrefix(bad.Text, "DB migration failed in production (shop v1.2.3)\nDB migration result: failed (exit 1) at 20240301000000 Explode") {
		t.Errorf("the failure's first lines do not say what failed:\n%s", bad.Text)
	}
	if !strings.Contains(bad.Text, "kaboom &lt;!channel&gt;") || strings.Count(bad.Text, "```") != 2 {
		t.Errorf("failure text not escaped:\n%s", bad.Text)
	}
	for _, r := range []result{first, quiet, failed} {
		if strings.Contains(r.all(), "WebhookSecret0123") || strings.Contains(r.all(), srv.Password()) {
			t.Errorf("a secret leaked:\n%s", r.all())
		}
	}
	if strings.Contains(raw, srv.Password()) {
		t.Errorf("the database password reached Slack")
	}
}

// TestSlackDownDoesNotChangeStatus: a failing Slack is logged, not fatal.
func TestSlackDownDoesNotChangeStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	hook := srv.URL + "/services/T0000/B0000/WebhookSecret0123"
	for _, tt := range []struct {
		args   []string
		status int
	}{{[]string{"--", "true"}, 0}, {[]string{"--", "false"}, 1}} {
		res := invocation{env: map[string]string{"MIGRUN_LOCK_MODE": "none", "SLACK_WEBHOOK_URL": hook, "MIGRUN_NOTIFY_TIMEOUT": "2s"}, args: tt.args}.run(t)
		if res.status != tt.status {
			t.Errorf("%v: exit status %d, want %d", tt.args, res.status, tt.status)
		}
		if !strings.Contains(res.stderr, "slack notification failed") || strings.Contains(res.all(), "WebhookSecret0123") {
			t.Errorf("stderr:\n%s", res.stderr)
		}
	}
}

// TestConfigErrorIsReported: bad configuration is posted once Slack itself
// is configured, and still exits 64.
func TestConfigErrorIsReported(t *testing.T) {
	rc, hook := newSlackReceiver(t)
	res := invocation{env: map[string]string{"SLACK_WEBHOOK_URL": hook, "DATABASE_URL": "postgres://u:DbSecretPw1@h/db", "MIGRUN_LOCK_TIMEOUT": "soon"}, args: []string{"--", "true"}}.run(t)
	if res.status != 64 {
		t.Fatalf("exit status %d, want 64", res.status)
	}
	msgs, raw := rc.all()
	if len(msgs) != 1 || msgs[0].Attachments[0].Fields[0].Value != "configuration error" || !strings.Contains(raw, "MIGRUN_LOCK_TIMEOUT") {
		t.Fatalf("messages:\n%s", raw)
	}
	if strings.Contains(raw+res.all(), "DbSecretPw1") || strings.Contains(res.all(), "WebhookSecret0123") {
		t.Errorf("a secret leaked:\n%s\n%s", raw, res.all())
	}
}

// TestRunningNoticeAndWebhook: a command that runs longer than
// MIGRUN_NOTIFY_RUNNING_AFTER gets a "migration running" message, then its
// result as a second message (webhook); the generic webhook receives the
// result document.
func TestRunningNoticeAndWebhook(t *testing.T) {
	rc, hook := newSlackReceiver(t)
	var mu sync.Mutex
	var docs []map[string]any
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var doc map[string]any
		if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
			t.Errorf("the result webhook got no JSON: %v", err)
		}
		mu.Lock()
		docs = append(docs, doc)
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)
	sqlite := "sqlite3:" + filepath.Join(t.TempDir(), "db.sqlite3")
	res := invocation{env: map[string]string{
		"DATABASE_URL": sqlite, "SLACK_WEBHOOK_URL": hook, "MIGRUN_WEBHOOK_URL": receiver.URL + "/hook/Secret0123",
		"MIGRUN_NOTIFY_RUNNING_AFTER": "1s", "MIGRUN_ENVIRONMENT": "production",
	}, args: []string{"run", "--", "sh", "-c", "echo '== 20240101000000 CreateUsers: migrating ====='; sleep 3; echo '== 20240101000000 CreateUsers: migrated (3.0s) ====='"}}.run(t)
	if res.status != 0 {
		t.Fatalf("exit %d:\n%s", res.status, res.stderr)
	}
	msgs, raw := rc.all()
	if len(msgs) != 2 || !strings.HasPrefix(msgs[0].Text, "DB migration running in production") || !strings.HasPrefix(msgs[1].Text, "DB migration succeeded in production") {
		t.Fatalf("want a running notice, then the result:\n%s", raw)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(docs) != 1 || docs[0]["schema"] != "migrun.result/v1" || docs[0]["outcome"] != "succeeded" {
		t.Fatalf("result webhook got %v", docs)
	}
	if strings.Contains(res.all(), "Secret0123") {
		t.Errorf("the webhook's secret path was printed:\n%s", res.all())
	}
}
