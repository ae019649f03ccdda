package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/report"
)

func webhookOptions(hook string, logs io.Writer) WebhookOptions {
	return WebhookOptions{URL: hook, Timeout: 5 * time.Second, AttemptTimeout: time.Second,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
}

func mustNewWebhook(t *testing.T, o WebhookOptions) *Webhook {
	t.Helper()
	w, err := NewWebhook(o)
	if err != nil {
		t.Fatalf("NewWebhook() = %v", err)
	}
	return w
}

// TestWebhookDocuments: every result, an unknown future outcome and an
// empty result arrive as documents valid by result.schema.json, with every
// field documented there.
func TestWebhookDocuments(t *testing.T) {
	js := loadSchema(t)
	all := map[string]report.Result{
		"finished after a running notice": finishedResult(),
		"unknown outcome":                 {Outcome: "rolled back", ExitCode: -1, Environment: "production"},
		"empty":                           {},
		"hostile": {Outcome: report.Failed, ExitCode: 1, Environment: "<!channel>\x00\xff", Output: "\x1b[1m<&>\"\\\x00\xff" + strings.Repeat("x", 100000),
			Err: "\"quoted\"\n", Pending: []string{"\xff"}},
	}
	for name, r := range results {
		all[name] = r
	}
	for name, r := range all {
		t.Run(name, func(t *testing.T) {
			rc, _, hook := newReceiver(t)
			if err := mustNewWebhook(t, webhookOptions(hook, io.Discard)).Send(context.Background(), r); err != nil {
				t.Fatalf("Send() = %v", err)
			}
			got := rc.received()
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			if errs := js.validate(js.root, decodeJSON(t, got[0].body), "$"); len(errs) > 0 {
				t.Errorf("document does not match the schema:\n%s\n%s", strings.Join(errs, "\n"), got[0].body)
			}
			if len(got[0].body) > report.MaxDocumentOutput+16<<10 {
				t.Errorf("document of %d bytes", len(got[0].body))
			}
		})
	}
}

// TestWebhookSend: one POST of the document as JSON to the webhook, not
// HTML-escaped.
func TestWebhookSend(t *testing.T) {
	rc, _, hook := newReceiver(t)
	r := results["failed migration"]
	r.Output = "a <b> & c"
	if err := mustNewWebhook(t, webhookOptions(hook+"\n", io.Discard)).Send(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	got := rc.received()
	if len(got) != 1 || got[0].path != secretPath || got[0].contentType != "application/json" {
		t.Fatalf("requests %+v", got)
	}
	if !bytes.Contains(got[0].body, []byte(`"output":"a <b> & c"`)) {
		t.Errorf("output escaped or missing:\n%s", got[0].body)
	}
	var d report.Document
	if err := json.Unmarshal(got[0].body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Schema != report.Schema || d.Headline != "DB migration failed in production (shop v1.2.3)" || d.FailedMigration == nil ||
		d.FailedMigration.Name != "AddFlag" || d.Namespace != "web" || d.Link != r.Link || d.ExitStatus != 1 {
		t.Errorf("document %+v", d)
	}
}

// TestWebhookDelivery: the Slack webhook's rules: retried on network
// errors, 408, 429 (after Retry-After) and 5xx within the bound; final on
// other answers; redirects not followed; the URL never shown.
func TestWebhookDelivery(t *testing.T) {
	tests := []struct {
		name       string
		responses  []func(w http.ResponseWriter)
		timeout    time.Duration
		wantErr    string
		attempts   int
		retryAfter bool
	}{
		{name: "202 is success", responses: []func(http.ResponseWriter){answer(202, "")}, attempts: 1},
		{name: "500 then ok", responses: []func(http.ResponseWriter){answer(500, "")}, attempts: 2},
		{name: "408 then ok", responses: []func(http.ResponseWriter){answer(408, "")}, attempts: 2},
		{name: "429 with seconds", responses: []func(http.ResponseWriter){answer(429, "", "Retry-After", "1")}, attempts: 2, retryAfter: true},
		{name: "400 is final", responses: []func(http.ResponseWriter){answer(400, "bad document "+secretPath)},
			wantErr: `result webhook answered 400 Bad Request: "bad document [REDACTED]"`, attempts: 1},
		{name: "redirect is not followed", responses: []func(http.ResponseWriter){answer(308, "", "Location", "/elsewhere")}, wantErr: "308", attempts: 1},
		{name: "always 503 gives up at the bound", responses: repeat(answer(503, ""), 1000), timeout: 1500 * time.Millisecond, wantErr: "gave up after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc, _, hook := newReceiver(t, tt.responses...)
			var logs bytes.Buffer
			opts := webhookOptions(hook+"?sig=SECRETxyz123", &logs)
			if tt.timeout > 0 {
				opts.Timeout = tt.timeout
			}
			err := mustNewWebhook(t, opts).Send(context.Background(), results["failure"])
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Send() = %v, want %q", err, tt.wantErr)
			}
			got := rc.received()
			if tt.attempts > 0 && len(got) != tt.attempts || tt.attempts == 0 && len(got) < 2 {
				t.Errorf("%d attempts, want %d", len(got), tt.attempts)
			}
			if tt.retryAfter {
				assertRespectedRetryAfter(t, got[0], got[1])
			}
			if len(got) > 1 && !strings.Contains(logs.String(), "result webhook attempt failed; retrying") {
				t.Errorf("retries not logged:\n%s", logs.String())
			}
			assertNoSecret(t, errString(err), logs.String())
		})
	}
}

// TestWebhookRefused: a refused connection is retried, then an error
// without the URL, its user information or its query.
func TestWebhookRefused(t *testing.T) {
	var logs bytes.Buffer
	opts := webhookOptions("http://user:SECRETtoken@127.0.0.1:1"+secretPath+"?sig=SECRETxyz123", &logs)
	opts.Timeout = time.Second
	err := mustNewWebhook(t, opts).Send(context.Background(), results["failure"])
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Send() = %v", err)
	}
	assertNoSecret(t, err.Error(), logs.String())
	if strings.Contains(err.Error()+logs.String(), "user:") {
		t.Errorf("user information leaked: %v\n%s", err, logs.String())
	}
}

func TestWebhookValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    WebhookOptions
		wantErr string
	}{
		{"none", WebhookOptions{}, ""},
		{"https", WebhookOptions{URL: "https://relay.example.com/hooks/SECRET"}, ""},
		{"trailing newline", WebhookOptions{URL: "https://relay.example.com/hooks/SECRET\n"}, ""},
		{"not absolute", WebhookOptions{URL: "relay.example.com/SECRET"}, "must start with https://"},
		{"no host", WebhookOptions{URL: "https:///SECRET"}, "no host"},
		{"bad escape", WebhookOptions{URL: "https://relay.example.com/%zzSECRET"}, "does not parse"},
		{"negative timeout", WebhookOptions{URL: "https://relay.example.com/SECRET", AttemptTimeout: -1}, "negative"},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: Validate() = %q shows the URL", tt.name, err)
		}
		if _, nerr := NewWebhook(tt.opts); err != nil && (nerr == nil || nerr.Error() != err.Error()) {
			t.Errorf("%s: NewWebhook() = %v, want Validate's error", tt.name, nerr)
		}
	}
	if _, err := NewWebhook(WebhookOptions{URL: " "}); err == nil {
		t.Error("NewWebhook() without a URL succeeded")
	}
}
