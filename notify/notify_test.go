package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
)

// secretPath is the secret part of the webhook URLs the tests use; token is
// the bot token.
const (
	secretPath = "/services/T000/B000/SECRETxyz123"
	token      = "xoxb-1234-SECRETtoken"
)

// request is what the stand-in for Slack received.
type request struct {
	at          time.Time
	path        string
	contentType string
	referer     string
	body        []byte
	retryAfter  string // what the answer's Retry-After said
}

// receiver stands in for Slack: it records what it receives and answers
// with the scripted responses in turn, then with success.
type receiver struct {
	mu        sync.Mutex
	requests  []request
	responses []func(w http.ResponseWriter)
	posts     int // chat.postMessage calls answered ok, for distinct timestamps
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := request{at: time.Now(), path: r.URL.Path, contentType: r.Header.Get("Content-Type"), referer: r.Referer(), body: body}
	rc.mu.Lock()
	var respond func(w http.ResponseWriter)
	if len(rc.responses) > 0 {
		respond, rc.responses = rc.responses[0], rc.responses[1:]
	}
	rc.mu.Unlock()
	switch {
	case respond != nil:
		respond(w)
	case strings.HasSuffix(r.URL.Path, "chat.postMessage"):
		rc.mu.Lock()
		rc.posts++
		ts := fmt.Sprintf("1700000000.%06d", rc.posts)
		rc.mu.Unlock()
		_, _ = fmt.Fprintf(w, `{"ok":true,"channel":"C1","ts":%q}`, ts)
	case strings.HasSuffix(r.URL.Path, "chat.update"):
		form, _ := url.ParseQuery(string(body))
		_, _ = fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q,"text":"x"}`, form.Get("channel"), form.Get("ts"))
	default:
		_, _ = w.Write([]byte("ok"))
	}
	req.retryAfter = w.Header().Get("Retry-After")
	rc.mu.Lock()
	rc.requests = append(rc.requests, req)
	rc.mu.Unlock()
}

func (rc *receiver) received() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.requests...)
}

// newReceiver starts a stand-in for Slack and returns it with a webhook URL
// on it.
func newReceiver(t *testing.T, responses ...func(w http.ResponseWriter)) (*receiver, *httptest.Server, string) {
	t.Helper()
	rc := &receiver{responses: responses}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv, srv.URL + secretPath
}

func answer(code int, body string, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func repeat(f func(http.ResponseWriter), n int) []func(http.ResponseWriter) {
	out := make([]func(http.ResponseWriter), n)
	for i := range out {
		out[i] = f
	}
	return out
}

func testOptions(webhook string, logs io.Writer) Options {
	return Options{
		WebhookURL:     webhook,
		Channel:        "#deploy_channel",
		Timeout:        5 * time.Second,
		AttemptTimeout: time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, nil)),
	}
}

func mustNew(t *testing.T, o Options) *Notifier {
	t.Helper()
	n, err := New(o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return n
}

var results = map[string]report.Result{
	"success": {
		Outcome: report.Succeeded, ExitCode: 0, Environment: "production",
		Output:     "== 20240101000000 CreateUsers: migrating ===\n-- create_table(:users)\n   -> 0.0045s\n== 20240101000000 CreateUsers: migrated (0.0046s) ===",
		Migrations: []rails.Migration{{Version: "20240101000000", Name: "CreateUsers", Action: "migrated"}},
		Host:       "migrate-abc", App: "shop", Revision: "v1.2.3", Duration: 2345 * time.Millisecond,
		Lock: report.Lock{Acquired: true, Waited: 3 * time.Second},
	},
	"nothing pending": {Outcome: report.Succeeded, Environment: "production", Output: "No DB migration"},
	"skipped":         {Outcome: report.Skipped, Environment: "production", ExitCode: -1},
	"failure":         {Outcome: report.Failed, ExitCode: 1, Environment: "production", Output: "rails aborted!\nStandardError: boom"},
	"failed migration": {Outcome: report.Failed, ExitCode: 1, Environment: "production", App: "shop", Revision: "v1.2.3", Namespace: "web",
		Link:            "https://argocd.example.com/applications/shop?revision=v1.2.3&x=1",
		Output:          "== 20240101000000 CreateUsers: migrated (0.0046s) ===\n== 20240102000000 AddFlag: migrating ===\nrails aborted!\nStandardError: boom",
		Migrations:      []rails.Migration{{Version: "20240101000000", Name: "CreateUsers", Action: "migrated"}},
		FailedMigration: &rails.Migration{Version: "20240102000000", Name: "AddFlag", Action: "migrating"}},
	"signal": {Outcome: report.Killed, ExitCode: -1, Signal: 15, Environment: "staging", Output: "== 1 A: migrating ==="},
	"lock timeout": {Outcome: report.LockTimeout, ExitCode: -1, Environment: "production",
		Err: "lock not acquired in 30m0s", Lock: report.Lock{Timeout: 30 * time.Minute}},
	"lock lost": {Outcome: report.Succeeded, Environment: "production", Output: "ok",
		Lock: report.Lock{Acquired: true, Lost: "connection reset by peer"}},
	"unreachable":  {Outcome: report.Unreachable, ExitCode: -1, Environment: "production", Err: "database unavailable: dial tcp 10.0.0.1:5432: connection refused"},
	"config error": {Outcome: report.ConfigError, ExitCode: -1, Environment: "development", Err: `invalid MIGRUN_LOCK_TIMEOUT "x"`},
}

// TestNotifyPayload: what arrives is JSON of the incoming webhook's shape,
// with the configured channel, username and icon; the text starts with
// the headline and the result, then the link and the output; the outcome
// is in words and colour.
func TestNotifyPayload(t *testing.T) {
	tests := []struct {
		result, head, outcome, color, block string
		fields                              map[string]string
	}{
		{"success", "DB migration succeeded in production (shop v1.2.3)\nDB migration result: succeeded\n",
			"succeeded", "good", results["success"].Output, map[string]string{
				"Migrations": "20240101000000 CreateUsers (migrated)", "Duration": "2.345s", "Host": "migrate-abc",
				"App": "shop", "Revision": "v1.2.3", "Lock wait": "3s"}},
		{"nothing pending", "DB migration succeeded in production\nDB migration result: succeeded\n",
			"succeeded", "good", "No DB migration", map[string]string{"Migrations": "none"}},
		{"skipped", "DB migration skipped in production: nothing pending\nDB migration result: skipped (nothing pending)\n",
			"skipped (nothing pending)", "good", noOutput, nil},
		{"failure", "DB migration failed in production\nDB migration result: failed (exit 1)\n",
			"failed (exit 1)", "danger", "rails aborted!\nStandardError: boom", nil},
		{"failed migration", "DB migration failed in production (shop v1.2.3)\n" +
			"DB migration result: failed (exit 1) at 20240102000000 AddFlag\n" +
			"<https://argocd.example.com/applications/shop?revision=v1.2.3&amp;x=1|argocd.example.com>\n",
			"failed (exit 1)", "danger", results["failed migration"].Output, map[string]string{
				"Migrations": "20240101000000 CreateUsers (migrated)\n20240102000000 AddFlag (failed while migrating)",
				"Namespace":  "web"}},
		{"signal", "DB migration killed by SIGTERM in staging\nDB migration result: killed by SIGTERM\n",
			"killed by SIGTERM", "danger", "== 1 A: migrating ===", nil},
		{"lock timeout", "DB migration: lock not acquired in 30m in production\nDB migration result: lock not acquired in 30m\n",
			"lock not acquired in 30m", "warning", noOutput, map[string]string{"Error": "lock not acquired in 30m0s"}},
		{"lock lost", "DB migration succeeded in production, but the lock was lost while it ran\nDB migration result: succeeded\n",
			"succeeded", "warning", "ok", map[string]string{"Lock lost": "connection reset by peer"}},
		{"unreachable", "DB migration: database unreachable in production\nDB migration result: database unreachable\n",
			"database unreachable", "danger", noOutput, map[string]string{"Error": "database unavailable: dial tcp 10.0.0.1:5432: connection refused"}},
		{"config error", "DB migration: configuration error in development\nDB migration result: configuration error\n",
			"configuration error", "danger", noOutput, map[string]string{"Error": `invalid MIGRUN_LOCK_TIMEOUT "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.result, func(t *testing.T) {
			r := results[tt.result]
			rc, _, hook := newReceiver(t)
			if err := mustNew(t, testOptions(hook, io.Discard)).Notify(context.Background(), r); err != nil {
				t.Fatalf("Notify() = %v", err)
			}
			got := rc.received()
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			if got[0].path != secretPath || got[0].contentType != "application/json" {
				t.Errorf("posted to %q as %q", got[0].path, got[0].contentType)
			}
			assertWebhookShape(t, got[0].body)
			var m slack.WebhookMessage
			if err := json.Unmarshal(got[0].body, &m); err != nil {
				t.Fatal(err)
			}
			if m.Channel != "#deploy_channel" || m.Username != "Rails DB Migration" || m.IconEmoji != ":rails:" {
				t.Errorf("channel %q username %q icon %q", m.Channel, m.Username, m.IconEmoji)
			}
			want := tt.head + "```\n" + escape(tt.block) + "\n```"
			if m.Text != want {
				t.Errorf("text\n%s\nwant\n%s", m.Text, want)
			}
			if len(m.Attachments) != 1 {
				t.Fatalf("attachments %+v", m.Attachments)
			}
			a := m.Attachments[0]
			if a.Color != tt.color || a.Fields[0].Title != "Outcome" || a.Fields[0].Value != tt.outcome {
				t.Errorf("color %q, first field %+v; want %q, Outcome %q", a.Color, a.Fields[0], tt.color, tt.outcome)
			}
			if a.Fallback != escape(r.Headline()) {
				t.Errorf("fallback %q, want the headline", a.Fallback)
			}
			byTitle := map[string]string{}
			for _, f := range a.Fields {
				byTitle[f.Title] = f.Value
			}
			for title, value := range tt.fields {
				if byTitle[title] != escape(value) {
					t.Errorf("field %s = %q, want %q", title, byTitle[title], escape(value))
				}
			}
		})
	}
}

// assertWebhookShape checks the payload against the incoming webhook's
// documented fields, with their JSON types.
func assertWebhookShape(t *testing.T, body []byte) {
	t.Helper()
	var p struct {
		Text        *string `json:"text"`
		Channel     string  `json:"channel"`
		Username    string  `json:"username"`
		IconEmoji   string  `json:"icon_emoji"`
		Attachments []struct {
			Color    string `json:"color"`
			Fallback string `json:"fallback"`
			Fields   []struct {
				Title string `json:"title"`
				Value string `json:"value"`
				Short bool   `json:"short"`
			} `json:"fields"`
		} `json:"attachments"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("payload does not decode as a webhook message: %v\n%s", err, body)
	}
	if dec.More() {
		t.Fatalf("trailing data after the payload: %s", body)
	}
	if p.Text == nil || len(p.Attachments) == 0 || len(p.Attachments[0].Fields) == 0 {
		t.Errorf("payload lacks text or attachment fields: %s", body)
	}
}

func TestDelivery(t *testing.T) {
	tests := []struct {
		name       string
		responses  []func(w http.ResponseWriter)
		timeout    time.Duration
		wantErr    string // in the error; "" for success
		attempts   int    // 0: at least 2
		retryAfter bool   // the second attempt must respect the first answer's Retry-After
	}{
		{name: "500 then ok", responses: []func(http.ResponseWriter){answer(500, "rollup_error")}, attempts: 2},
		{name: "502 and 408 then ok", responses: []func(http.ResponseWriter){answer(502, ""), answer(408, "")}, attempts: 3},
		{name: "429 with seconds", responses: []func(http.ResponseWriter){answer(429, "", "Retry-After", "1")}, attempts: 2, retryAfter: true},
		{name: "429 with a date", responses: []func(http.ResponseWriter){func(w http.ResponseWriter) {
			// Up to 2s ahead: HTTP dates have whole seconds.
			answer(429, "", "Retry-After", time.Now().Add(time.Second).UTC().Format(http.TimeFormat))(w)
		}}, attempts: 2, retryAfter: true},
		{name: "429 with nonsense", responses: []func(http.ResponseWriter){answer(429, "", "Retry-After", "soon")}, attempts: 2},
		{name: "400 is final", responses: []func(http.ResponseWriter){answer(400, "invalid_payload")}, wantErr: `400 Bad Request: "invalid_payload"`, attempts: 1},
		{name: "404 is final", responses: []func(http.ResponseWriter){answer(404, "no_service")}, wantErr: "no_service", attempts: 1},
		{name: "always 503 gives up at the bound", responses: repeat(answer(503, ""), 1000), timeout: 1500 * time.Millisecond, wantErr: "gave up after"},
		{name: "Retry-After past the bound gives up at once", responses: []func(http.ResponseWriter){answer(429, "", "Retry-After", "3600")},
			wantErr: "would be past the 5s bound", attempts: 1},
		{name: "redirect is not followed", responses: []func(http.ResponseWriter){answer(302, "", "Location", "/elsewhere")}, wantErr: "302 Found", attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc, _, hook := newReceiver(t, tt.responses...)
			var logs bytes.Buffer
			opts := testOptions(hook, &logs)
			if tt.timeout > 0 {
				opts.Timeout = tt.timeout
			}
			start := time.Now()
			err := mustNew(t, opts).Notify(context.Background(), results["failure"])
			t.Logf("Notify() = %v", err)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Notify() = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Notify() = %v, want an error with %q", err, tt.wantErr)
			}
			if elapsed := time.Since(start); elapsed > opts.Timeout+10*time.Second { // a sanity bound, not a measurement
				t.Errorf("Notify() took %s with a %s bound", elapsed, opts.Timeout)
			}
			got := rc.received()
			if tt.attempts > 0 && len(got) != tt.attempts || tt.attempts == 0 && len(got) < 2 {
				t.Errorf("%d attempts, want %d", len(got), tt.attempts)
			}
			if tt.retryAfter {
				assertRespectedRetryAfter(t, got[0], got[1])
			}
			for _, r := range got {
				if r.path != secretPath {
					t.Errorf("a request went to %q", r.path)
				}
			}
			assertNoSecret(t, errString(err), logs.String())
		})
	}
}

// assertRespectedRetryAfter: the second attempt came no earlier than the
// first answer's Retry-After allowed. Timers never fire early, so this
// cannot flake on a slow machine.
func assertRespectedRetryAfter(t *testing.T, first, second request) {
	t.Helper()
	if date, err := http.ParseTime(first.retryAfter); err == nil {
		if second.at.Round(0).Before(date) {
			t.Errorf("retried at %s, before Retry-After %s", second.at.UTC(), date)
		}
		return
	}
	secs, err := time.ParseDuration(first.retryAfter + "s")
	if err != nil {
		t.Fatalf("bad Retry-After %q", first.retryAfter)
	}
	if gap := second.at.Sub(first.at); gap < secs {
		t.Errorf("retried after %s, Retry-After said %s", gap, secs)
	}
}

// TestGivingUp: a hanging Slack and a refused connection end in an error
// within the bound, and neither the error nor the logs, text or JSON, show
// the webhook URL.
func TestGivingUp(t *testing.T) {
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		hanging.Close()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	tests := []struct {
		name, base string
		want       error
		wantText   string
	}{
		{"hanging", hanging.URL, context.DeadlineExceeded, "gave up after"},
		{"refused", refused, nil, "connection refused"},
	}
	for _, tt := range tests {
		for _, format := range []string{"text", "json"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				t.Parallel()
				var logs bytes.Buffer
				var h slog.Handler = slog.NewTextHandler(&logs, nil)
				if format == "json" {
					h = slog.NewJSONHandler(&logs, nil)
				}
				n := mustNew(t, Options{WebhookURL: tt.base + secretPath + "?token=SECRETquery",
					Timeout: 1500 * time.Millisecond, AttemptTimeout: 400 * time.Millisecond, Logger: slog.New(h)})
				start := time.Now()
				err := n.Notify(context.Background(), results["failure"])
				if err == nil {
					t.Fatal("Notify() succeeded")
				}
				t.Logf("Notify() = %v\n%s", err, logs.String())
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("Notify() = %v, want %v", err, tt.want)
				}
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("Notify() = %v, want %q in it", err, tt.wantText)
				}
				if elapsed := time.Since(start); elapsed > 20*time.Second { // sanity, far above the 1.5s bound
					t.Errorf("Notify() took %s", elapsed)
				}
				if !strings.Contains(logs.String(), "retrying") {
					t.Errorf("retries not logged:\n%s", logs.String())
				}
				assertNoSecret(t, err.Error(), logs.String())
				if strings.Contains(err.Error()+logs.String(), "SECRETquery") {
					t.Errorf("the webhook's query leaked:\n%v\n%s", err, logs.String())
				}
			})
		}
	}
}

func TestCancelledContextStopsRetrying(t *testing.T) {
	answered := make(chan struct{})
	first := func(w http.ResponseWriter) {
		answer(503, "")(w)
		close(answered)
	}
	_, _, hook := newReceiver(t, append([]func(http.ResponseWriter){first}, repeat(answer(503, ""), 1000)...)...)
	ctx, cancel := context.WithCancel(context.Background())
	opts := testOptions(hook, io.Discard)
	opts.Timeout = time.Minute
	done := make(chan error, 1)
	go func() { done <- mustNew(t, opts).Notify(ctx, results["failure"]) }()
	<-answered
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cancelled") {
			t.Errorf("Notify() = %v, want it cancelled", err)
		}
	case <-time.After(20 * time.Second): // sanity: a minute's bound must not be waited out
		t.Fatal("Notify() went on after its context was cancelled")
	}
}

// TestRedirectKeepsTheURL: a webhook that redirects is an error, and the
// webhook URL does not travel to the redirect target as a Referer.
func TestRedirectKeepsTheURL(t *testing.T) {
	target, _, targetURL := newReceiver(t)
	rc, _, hook := newReceiver(t, answer(307, "", "Location", targetURL))
	err := mustNew(t, testOptions(hook, io.Discard)).Notify(context.Background(), results["success"])
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("Notify() = %v, want the redirect as an error", err)
	}
	if len(rc.received()) != 1 || len(target.received()) != 0 {
		t.Errorf("%d requests to the webhook, %d to the redirect target; want 1, 0", len(rc.received()), len(target.received()))
	}
}

func TestBotToken(t *testing.T) {
	dateIn1s := func(w http.ResponseWriter) {
		answer(429, "", "Retry-After", time.Now().Add(time.Second).UTC().Format(http.TimeFormat))(w)
	}
	tests := []struct {
		name      string
		responses []func(http.ResponseWriter)
		wantErr   string
		attempts  int
	}{
		{name: "posts", attempts: 1},
		{name: "429 with a date", responses: []func(http.ResponseWriter){dateIn1s}, attempts: 2},
		{name: "429 with seconds", responses: []func(http.ResponseWriter){answer(429, "", "Retry-After", "1")}, attempts: 2},
		{name: "500 then ok", responses: []func(http.ResponseWriter){answer(500, "<html>")}, attempts: 2},
		{name: "internal_error then ok", responses: []func(http.ResponseWriter){answer(200, `{"ok":false,"error":"internal_error"}`)}, attempts: 2},
		{name: "channel_not_found is final", responses: []func(http.ResponseWriter){answer(200, `{"ok":false,"error":"channel_not_found"}`)},
			wantErr: "channel_not_found", attempts: 1},
		{name: "invalid_auth is final", responses: []func(http.ResponseWriter){answer(200, `{"ok":false,"error":"invalid_auth"}`)},
			wantErr: "invalid_auth", attempts: 1},
		{name: "always 503 gives up", responses: repeat(answer(503, ""), 1000), wantErr: "gave up after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc, srv, _ := newReceiver(t, tt.responses...)
			var logs bytes.Buffer
			n := mustNew(t, Options{BotToken: token + "\n", Channel: "#deploys", APIURL: srv.URL + "/",
				Timeout: 3 * time.Second, AttemptTimeout: time.Second,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			err := n.Notify(context.Background(), results["failure"])
			t.Logf("Notify() = %v", err)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Notify() = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Notify() = %v, want an error with %q", err, tt.wantErr)
			}
			got := rc.received()
			if tt.attempts > 0 && len(got) != tt.attempts || tt.attempts == 0 && len(got) < 2 {
				t.Fatalf("%d attempts, want %d", len(got), tt.attempts)
			}
			if len(got) == 2 && got[0].retryAfter != "" {
				assertRespectedRetryAfter(t, got[0], got[1])
			}
			last := got[len(got)-1]
			if last.path != "/chat.postMessage" {
				t.Errorf("posted to %q", last.path)
			}
			form, err := url.ParseQuery(string(last.body))
			if err != nil {
				t.Fatal(err)
			}
			if form.Get("token") != token || form.Get("channel") != "#deploys" ||
				form.Get("username") != DefaultUsername || form.Get("icon_emoji") != DefaultIconEmoji {
				t.Errorf("form token ok %v, channel %q, username %q, icon %q",
					form.Get("token") == token, form.Get("channel"), form.Get("username"), form.Get("icon_emoji"))
			}
			if !strings.HasPrefix(form.Get("text"), "DB migration failed in production\nDB migration result: failed (exit 1)\n```\n") {
				t.Errorf("text %q", form.Get("text"))
			}
			var attachments []slack.Attachment
			if err := json.Unmarshal([]byte(form.Get("attachments")), &attachments); err != nil || len(attachments) != 1 || attachments[0].Color != "danger" {
				t.Errorf("attachments %q: %v", form.Get("attachments"), err)
			}
			assertNoSecret(t, errString(err), logs.String())
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"webhook", Options{WebhookURL: "https://hooks.slack.com/services/T/B/SECRET"}, ""},
		{"webhook with a trailing newline", Options{WebhookURL: "https://hooks.slack.com/services/T/B/SECRET\n"}, ""},
		{"webhook wins over a token without channel", Options{WebhookURL: "https://hooks.slack.com/services/T/B/SECRET", BotToken: "xoxb-SECRET"}, ""},
		{"nothing", Options{}, ""},
		{"not absolute", Options{WebhookURL: "hooks.slack.com/services/T/B/SECRET"}, "must start with https://"},
		{"plain http", Options{WebhookURL: "http://hooks.slack.com/services/T/B/SECRET"}, "must start with https:// (http:// only to localhost)"},
		{"bad scheme", Options{WebhookURL: "ftp://hooks.slack.com/SECRET"}, "must start with https://"},
		{"no host", Options{WebhookURL: "https:///services/SECRET"}, "no host"},
		{"control character", Options{WebhookURL: "https://hooks.slack.com/\x7fSECRET"}, "does not parse"},
		{"bad escape", Options{WebhookURL: "https://hooks.slack.com/%zzSECRET"}, "does not parse"},
		{"token without channel", Options{BotToken: "xoxb-SECRET"}, "needs a channel"},
		{"token with channel", Options{BotToken: "xoxb-SECRET", Channel: "#c"}, ""},
		{"bad API URL", Options{BotToken: "xoxb-SECRET", Channel: "#c", APIURL: "localhost:1/SECRET"}, "API URL is malformed"},
		{"negative timeout", Options{WebhookURL: "https://hooks.slack.com/services/T/B/SECRET", Timeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "\n")) {
				t.Errorf("Validate() = %q: a secret or more than one line", err)
			}
			if _, nerr := New(tt.opts); err != nil && (nerr == nil || nerr.Error() != err.Error()) {
				t.Errorf("New() = %v, want Validate's error", nerr)
			}
		})
	}
	if (Options{}).Enabled() || (Options{WebhookURL: " \n"}).Enabled() || !(Options{BotToken: "x"}).Enabled() {
		t.Error("Enabled() wrong")
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New() without Slack succeeded")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 3 ":                           3 * time.Second,
		"0":                             0,
		"-1":                            0,
		"1.5":                           0,
		"soon":                          0,
		"99999999999999":                maxRetryAfter,
		"Thu, 01 Jan 2026 00:00:05 GMT": 5 * time.Second,
		"Wed, 31 Dec 2025 23:59:00 GMT": 0,
		"Fri, 01 Jan 2100 00:00:00 GMT": maxRetryAfter,
	}
	for in, want := range tests {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestScrubber(t *testing.T) {
	hook := "https://hooks.slack.com/services/T000/B000/SECRETxyz123?x=SECRETq"
	s := secretScrubber(append(urlSecrets(hook+"\n"), token)...)
	in := "a " + hook + " b /services/T000/B000/SECRETxyz123 c x=SECRETq d " + token + " e https://hooks.slack.com/ f"
	got := s.Replace(in)
	want := "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED] e https://hooks.slack.com/ f"
	if got != want {
		t.Errorf("scrubbed\n%s\nwant\n%s", got, want)
	}
	// A webhook without a path must not redact every slash.
	if got := secretScrubber(urlSecrets("https://example.com/")...).Replace("a/b"); got != "a/b" {
		t.Errorf("scrubbed %q", got)
	}
}

func assertNoSecret(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, secret := range []string{"SECRETxyz123", "SECRETtoken", "T000/B000"} {
			if strings.Contains(s, secret) {
				t.Errorf("secret %q leaked: %s", secret, s)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
