package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
)

var commandStarted = time.Date(2026, 1, 2, 14, 2, 0, 0, time.UTC)

// runningResult is a long migration under way.
var runningResult = report.Result{
	Environment: "production", App: "shop", Revision: "v1.2.3", Host: "migrate-7f9c", Namespace: "web",
	Started:  commandStarted.Add(-time.Minute),
	Link:     "https://argocd.example.com/applications/shop?revision=v1.2.3",
	Pending:  []string{"20240102000000 AddIndexOnEvents", "20240103000000 BackfillFlags"},
	Lock:     report.Lock{Acquired: true, Waited: time.Minute},
	Attempts: []report.Attempt{{Started: commandStarted, ExitCode: -1}},
}

// finishedResult is how runningResult ended.
func finishedResult() report.Result {
	r := runningResult
	r.Outcome, r.ExitCode, r.Duration = report.Failed, 1, 2*time.Hour
	r.Output = "== 20240102000000 AddIndexOnEvents: migrating ===\nrails aborted!\nPG::QueryCanceled"
	r.FailedMigration = &rails.Migration{Version: "20240102000000", Name: "AddIndexOnEvents", Action: "migrating"}
	r.Attempts = []report.Attempt{{Started: commandStarted, Duration: 2 * time.Hour, ExitCode: 1, Reason: "failed (exit 1)"}}
	return r
}

func botOptions(srv string, logs io.Writer) Options {
	return Options{BotToken: token, Channel: "#deploys", APIURL: srv + "/",
		Timeout: 3 * time.Second, AttemptTimeout: time.Second, Logger: slog.New(slog.NewJSONHandler(logs, nil))}
}

func form(t *testing.T, r request) url.Values {
	t.Helper()
	f, err := url.ParseQuery(string(r.body))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func attachmentsOf(t *testing.T, f url.Values) []slack.Attachment {
	t.Helper()
	var a []slack.Attachment
	if err := json.Unmarshal([]byte(f.Get("attachments")), &a); err != nil || len(a) != 1 {
		t.Fatalf("attachments %q: %v", f.Get("attachments"), err)
	}
	return a
}

// TestRunningThenFinishedBotToken: the notice is posted, the result is a
// reply in its thread broadcast to the channel, and the notice is then
// edited to the final headline and colour.
func TestRunningThenFinishedBotToken(t *testing.T) {
	rc, srv, _ := newReceiver(t)
	var logs bytes.Buffer
	n := mustNew(t, botOptions(srv.URL, &logs))
	posted, err := n.Running(context.Background(), runningResult)
	if err != nil || posted == nil || posted.ts != "1700000000.000001" || posted.channel != "C1" {
		t.Fatalf("Running() = %+v, %v", posted, err)
	}
	if err := n.Finished(context.Background(), finishedResult(), posted); err != nil {
		t.Fatalf("Finished() = %v", err)
	}
	got := rc.received()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3 (notice, reply, update)", len(got))
	}

	notice := form(t, got[0])
	wantText := "DB migration running in production (shop v1.2.3)\n" +
		"Running since <!date^1767362520^{date_short_pretty} at {time}|2026-01-02 14:02 UTC> on migrate-7f9c\n" +
		"<https://argocd.example.com/applications/shop?revision=v1.2.3|argocd.example.com>"
	if got[0].path != "/chat.postMessage" || notice.Get("channel") != "#deploys" || notice.Get("text") != wantText || notice.Get("thread_ts") != "" {
		t.Errorf("notice to %s, channel %q, thread %q, text\n%s\nwant\n%s", got[0].path, notice.Get("channel"), notice.Get("thread_ts"), notice.Get("text"), wantText)
	}
	a := attachmentsOf(t, notice)[0]
	if a.Color != runningColor || a.Fields[0].Title != "Pending" || a.Fields[0].Value != "20240102000000 AddIndexOnEvents\n20240103000000 BackfillFlags" {
		t.Errorf("notice attachment %+v", a)
	}

	reply := form(t, got[1])
	if got[1].path != "/chat.postMessage" || reply.Get("channel") != "C1" || reply.Get("thread_ts") != posted.ts || reply.Get("reply_broadcast") != "true" {
		t.Errorf("reply to %s: channel %q thread %q broadcast %q", got[1].path, reply.Get("channel"), reply.Get("thread_ts"), reply.Get("reply_broadcast"))
	}
	if !strings.HasPrefix(reply.Get("text"), "DB migration failed in production (shop v1.2.3)\nDB migration result: failed (exit 1) at 20240102000000 AddIndexOnEvents\n") {
		t.Errorf("reply text:\n%s", reply.Get("text"))
	}
	if a := attachmentsOf(t, reply)[0]; a.Color != "danger" {
		t.Errorf("reply colour %q", a.Color)
	}

	update := form(t, got[2])
	if got[2].path != "/chat.update" || update.Get("channel") != "C1" || update.Get("ts") != posted.ts {
		t.Errorf("update to %s: channel %q ts %q", got[2].path, update.Get("channel"), update.Get("ts"))
	}
	if want := "DB migration failed in production (shop v1.2.3)\nDB migration result: failed (exit 1); details in the thread"; update.Get("text") != want {
		t.Errorf("update text\n%s\nwant\n%s", update.Get("text"), want)
	}
	if a := attachmentsOf(t, update)[0]; a.Color != "danger" || a.Fields[0].Value != "failed (exit 1)" {
		t.Errorf("update attachment %+v", a)
	}
	for _, r := range got {
		if f := form(t, r); f.Get("token") != token {
			t.Errorf("%s without the token", r.path)
		}
	}
	assertNoSecret(t, logs.String())
}

// TestFinishedBotTokenFaults: the reply and the edit are each retried;
// either failing for good is an error that says which, and the other is
// still made.
func TestFinishedBotTokenFaults(t *testing.T) {
	ok := func(w http.ResponseWriter) {
		_, _ = io.WriteString(w, `{"ok":true,"channel":"C1","ts":"1700000000.000009"}`)
	}
	tests := []struct {
		name      string
		responses []func(http.ResponseWriter) // after the notice
		paths     []string
		wantErr   string
	}{
		{name: "reply 500 then ok", responses: []func(http.ResponseWriter){answer(500, "")},
			paths: []string{"/chat.postMessage", "/chat.postMessage", "/chat.update"}},
		{name: "update 429 then ok", responses: []func(http.ResponseWriter){ok, answer(429, "", "Retry-After", "1")},
			paths: []string{"/chat.postMessage", "/chat.update", "/chat.update"}},
		{name: "update fails for good", responses: []func(http.ResponseWriter){ok, answer(200, `{"ok":false,"error":"message_not_found"}`)},
			paths: []string{"/chat.postMessage", "/chat.update"}, wantErr: "the result was posted, but updating the running notice failed: post to slack chat.update: message_not_found"},
		{name: "reply fails for good", responses: []func(http.ResponseWriter){answer(200, `{"ok":false,"error":"not_in_channel"}`)},
			paths: []string{"/chat.postMessage", "/chat.update"}, wantErr: "chat.postMessage: not_in_channel"},
		{name: "both fail", responses: []func(http.ResponseWriter){answer(200, `{"ok":false,"error":"not_in_channel"}`), answer(200, `{"ok":false,"error":"cant_update_message"}`)},
			paths: []string{"/chat.postMessage", "/chat.update"}, wantErr: "not_in_channel; updating the running notice failed too: post to slack chat.update: cant_update_message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc, srv, _ := newReceiver(t)
			var logs bytes.Buffer
			n := mustNew(t, botOptions(srv.URL, &logs))
			posted, err := n.Running(context.Background(), runningResult)
			if err != nil {
				t.Fatal(err)
			}
			rc.mu.Lock()
			rc.responses = tt.responses
			rc.mu.Unlock()
			err = n.Finished(context.Background(), finishedResult(), posted)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Finished() = %v, want %q", err, tt.wantErr)
			}
			got := rc.received()[1:]
			var paths []string
			for _, r := range got {
				paths = append(paths, r.path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.paths, " ") {
				t.Errorf("requests %v, want %v", paths, tt.paths)
			}
			if len(got) == 3 && got[1].path == got[2].path && got[1].retryAfter != "" {
				assertRespectedRetryAfter(t, got[1], got[2])
			}
			assertNoSecret(t, errString(err), logs.String())
		})
	}
}

// TestRunningThenFinishedWebhook: through a webhook the result is a second
// message; the notice says what is running where.
func TestRunningThenFinishedWebhook(t *testing.T) {
	rc, _, hook := newReceiver(t)
	n := mustNew(t, testOptions(hook, io.Discard))
	posted, err := n.Running(context.Background(), runningResult)
	if err != nil || posted == nil {
		t.Fatalf("Running() = %+v, %v", posted, err)
	}
	if err := n.Finished(context.Background(), finishedResult(), posted); err != nil {
		t.Fatalf("Finished() = %v", err)
	}
	got := rc.received()
	if len(got) != 2 || got[0].path != secretPath || got[1].path != secretPath {
		t.Fatalf("%d requests, want 2 to the webhook", len(got))
	}
	var notice, result slack.WebhookMessage
	if json.Unmarshal(got[0].body, &notice) != nil || json.Unmarshal(got[1].body, &result) != nil {
		t.Fatal("payloads are not JSON")
	}
	if !strings.HasPrefix(notice.Text, "DB migration running in production (shop v1.2.3)\nRunning since <!date^") ||
		notice.Channel != "#deploy_channel" || notice.Attachments[0].Color != runningColor {
		t.Errorf("notice %+v", notice)
	}
	if !strings.HasPrefix(result.Text, "DB migration failed in production (shop v1.2.3)\n") || result.Attachments[0].Color != "danger" {
		t.Errorf("result %+v", result)
	}
}

// TestRunningFails: a notice that cannot be posted is an error without a
// secret, and Finished without it posts the result on its own.
func TestRunningFails(t *testing.T) {
	rc, srv, _ := newReceiver(t, answer(200, `{"ok":false,"error":"channel_not_found"}`))
	var logs bytes.Buffer
	n := mustNew(t, botOptions(srv.URL, &logs))
	posted, err := n.Running(context.Background(), runningResult)
	if err == nil || posted != nil || !strings.Contains(err.Error(), "channel_not_found") {
		t.Fatalf("Running() = %+v, %v", posted, err)
	}
	if err := n.Finished(context.Background(), finishedResult(), posted); err != nil {
		t.Fatal(err)
	}
	got := rc.received()
	if len(got) != 2 || form(t, got[1]).Get("thread_ts") != "" {
		t.Errorf("%d requests; the result in a thread", len(got))
	}
	assertNoSecret(t, err.Error(), logs.String())
}

// TestRunningMessage: since when (the last attempt's start, else the
// run's), hostile values escaped, the one <!date> Slack formats.
func TestRunningMessage(t *testing.T) {
	r := runningResult
	r.Attempts = nil
	r.Host = "<!channel> `x`"
	r.Environment = "prod <@U1>"
	r.Pending = []string{"<!here>", strings.Repeat("x", 5000)}
	m := buildRunningMessage(r, Options{})
	if !strings.HasPrefix(m.Text, "DB migration running in prod &lt;@U1&gt; (shop v1.2.3)\nRunning since <!date^1767362460^") {
		t.Errorf("text:\n%s", m.Text)
	}
	if strings.Count(m.Text, "<!") != 1 || strings.Contains(m.Text, "<!channel>") {
		t.Errorf("text has a mention:\n%s", m.Text)
	}
	for _, f := range m.Attachments[0].Fields {
		if strings.ContainsAny(f.Value, "<>") || len(f.Value) > maxMigFields {
			t.Errorf("field %s: %.100q", f.Title, f.Value)
		}
	}
	r.Started = time.Time{}
	if m := buildRunningMessage(r, Options{}); strings.Contains(m.Text, "since") {
		t.Errorf("a start that is not known is shown:\n%s", m.Text)
	}
}

func TestSlackLink(t *testing.T) {
	tests := map[string]string{
		"": "",
		"https://argocd.example.com/applications/shop?revision=v1&env=prod": "<https://argocd.example.com/applications/shop?revision=v1&amp;env=prod|argocd.example.com>",
		"https://x.example/a|b<c>d e":                                       "<https://x.example/a%7Cb%3Cc%3Ed%20e|x.example>",
		"HTTPS://x.example/A":                                               "<https://x.example/A|x.example>",
		"javascript:alert(1)":                                               "",
		"ftp://x.example/":                                                  "",
		"/relative":                                                         "",
		"https://" + strings.Repeat("a", 3000):                              "",
	}
	for in, want := range tests {
		if got := slackLink(in); got != want {
			t.Errorf("slackLink(%.60q) = %q, want %q", in, got, want)
		}
	}
}
