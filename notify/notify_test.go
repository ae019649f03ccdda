package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
)

// receiver stands in for Slack: it records what it receives and answers
// with the scripted responses in turn (then 200).
type receiver struct {
	mu        sync.Mutex
	bodies    [][]byte
	paths     []string
	responses []func(w http.ResponseWriter)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, body)
	rc.paths = append(rc.paths, r.URL.Path)
	var respond func(w http.ResponseWriter)
	if len(rc.responses) > 0 {
		respond, rc.responses = rc.responses[0], rc.responses[1:]
	}
	rc.mu.Unlock()
	if respond != nil {
		respond(w)
		return
	}
	if strings.HasSuffix(r.URL.Path, "chat.postMessage") {
		_, _ = w.Write([]byte(`{"ok":true,"channel":"C1","ts":"1.2"}`))
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bodies)
}

func (rc *receiver) message(t *testing.T, i int) slack.WebhookMessage {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var m slack.WebhookMessage
	if err := json.Unmarshal(rc.bodies[i], &m); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, rc.bodies[i])
	}
	return m
}

func status(code int, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

func newReceiver(t *testing.T, responses ...func(w http.ResponseWriter)) (*receiver, string) {
	rc := &receiver{responses: responses}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL + "/services/T000/B000/SECRETxyz123"
}

func quickOptions(webhook string, logs io.Writer) Options {
	return Options{
		WebhookURL:     webhook,
		Channel:        "#deploy_channel",
		Timeout:        5 * time.Second,
		AttemptTimeout: time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, nil)),
	}
}

var results = map[string]report.Result{
	"success": {Outcome: report.Succeeded, ExitCode: 0, Environment: "production", Output: "== 20240101000000 CreateUsers: migrated (0.0046s) ===",
		Migrations: []rails.Migration{{Version: "20240101000000", Name: "CreateUsers", Action: "migrated"}}, Host: "migrate-abc", App: "shop", Revision: "v1.2.3"},
	"failure":      {Outcome: report.Failed, ExitStatus: 1, ExitCode: 1, Environment: "production", Output: "rails aborted!\nStandardError: boom"},
	"signal":       {Outcome: report.Signaled, ExitStatus: 143, ExitCode: -1, Signal: "SIGTERM", Environment: "staging", Output: "No DB migration"},
	"lock timeout": {Outcome: report.LockTimeout, ExitStatus: 75, ExitCode: -1, Environment: "production", Err: "lock not acquired in 30m0s", Lock: report.Lock{Timeout: 30 * time.Minute}},
	"unreachable":  {Outcome: report.Unreachable, ExitStatus: 69, ExitCode: -1, Environment: "production", Err: "database unavailable: dial tcp 10.0.0.1:5432: connection refused"},
	"config error": {Outcome: report.ConfigError, ExitStatus: 64, ExitCode: -1, Environment: "development", Err: "unknown lock mode \"x\""},
}

func TestNotifyPayload(t *testing.T) {
	want := map[string]struct{ outcome, color string }{
		"success":      {"succeeded", "good"},
		"failure":      {"failed (exit 1)", "danger"},
		"signal":       {"terminated by SIGTERM", "danger"},
		"lock timeout": {"lock not acquired in 30m0s", "warning"},
		"unreachable":  {"database unreachable", "danger"},
		"config error": {"configuration error", "danger"},
	}
	for name, r := range results {
		t.Run(name, func(t *testing.T) {
			rc, hook := newReceiver(t)
			n, err := New(quickOptions(hook, io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Notify(context.Background(), r); err != nil {
				t.Fatalf("Notify() = %v", err)
			}
			m := rc.message(t, 0)
			if m.Channel != "#deploy_channel" || m.Username != DefaultUsername || m.IconEmoji != DefaultIconEmoji {
				t.Errorf("channel %q username %q icon %q", m.Channel, m.Username, m.IconEmoji)
			}
			prefix := "DB migration result\n*environment*: " + r.Environment + "\n```\n"
			if !strings.HasPrefix(m.Text, prefix) || !strings.HasSuffix(m.Text, "\n```") {
				t.Errorf("text shape:\n%s", m.Text)
			}
			if len(m.Attachments) != 1 || m.Attachments[0].Color != want[name].color {
				t.Fatalf("attachments %+v", m.Attachments)
			}
			if got := m.Attachments[0].Fields[0].Value; got != want[name].outcome {
				t.Errorf("outcome %q, want %q", got, want[name].outcome)
			}
		})
	}
}

func TestHostileOutput(t *testing.T) {
	tests := []struct {
		name, output string
		want         []string // in the text
		notWant      []string
	}{
		{name: "quotes and escapes", output: "say \"hi\" \\ back\\slash\n\ttab", want: []string{"say \"hi\" \\ back\\slash\n\ttab"}},
		{name: "mentions and links", output: "<!channel> <http://x|y> a&b", want: []string{"&lt;!channel&gt; &lt;http://x|y&gt; a&amp;b"}, notWant: []string{"<!channel>", "<http"}},
		{name: "fence", output: "before ``` after ````` end`", notWant: []string{"```\u0020after", "``` after"}},
		{name: "invalid utf8 and NUL", output: "bad \xff\xfe byte\x00nul", want: []string{"bad \uFFFD byte\uFFFDnul"}, notWant: []string{"\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := roundTrip(t, report.Result{Outcome: report.Succeeded, Environment: "prod", Output: tt.output})
			for _, w := range tt.want {
				if !strings.Contains(m.Text, w) {
					t.Errorf("text lacks %q:\n%q", w, m.Text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(m.Text, w) {
					t.Errorf("text contains %q:\n%q", w, m.Text)
				}
			}
			if strings.Count(m.Text, "```") != 2 {
				t.Errorf("code block fences: %d, want 2:\n%q", strings.Count(m.Text, "```"), m.Text)
			}
		})
	}
}

func TestHugeOutputIsBounded(t *testing.T) {
	out := "HEAD\n" + strings.Repeat("line of <output> & more\n", 10<<20/24) + "rails aborted! THE ERROR"
	m := roundTrip(t, report.Result{Outcome: report.Failed, ExitCode: 1, Environment: "prod", Output: out})
	if n := len([]rune(m.Text)); n > MaxText {
		t.Fatalf("text has %d characters, want at most %d", n, MaxText)
	}
	for _, w := range []string{"HEAD", "THE ERROR", "characters omitted"} {
		if !strings.Contains(m.Text, w) {
			t.Errorf("text lacks %q", w)
		}
	}
}

func roundTrip(t *testing.T, r report.Result) slack.WebhookMessage {
	t.Helper()
	rc, hook := newReceiver(t)
	n, err := New(quickOptions(hook, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return rc.message(t, 0)
}

func TestDelivery(t *testing.T) {
	httpDate := time.Now().Add(time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name      string
		responses []func(w http.ResponseWriter)
		timeout   time.Duration
		wantErr   bool
		attempts  int
	}{
		{name: "500 then ok", responses: []func(http.ResponseWriter){status(500)}, attempts: 2},
		{name: "429 with seconds", responses: []func(http.ResponseWriter){status(429, "Retry-After", "1")}, attempts: 2},
		{name: "429 with a date", responses: []func(http.ResponseWriter){status(429, "Retry-After", httpDate)}, attempts: 2},
		{name: "400 is final", responses: []func(http.ResponseWriter){status(400)}, wantErr: true, attempts: 1},
		{name: "always 503 gives up within the bound", responses: repeat(status(503), 100), timeout: 2 * time.Second, wantErr: true},
		{name: "Retry-After past the bound gives up", responses: []func(http.ResponseWriter){status(429, "Retry-After", "3600")}, wantErr: true, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, hook := newReceiver(t, tt.responses...)
			var logs bytes.Buffer
			opts := quickOptions(hook, &logs)
			if tt.timeout > 0 {
				opts.Timeout = tt.timeout
			}
			n, _ := New(opts)
			err := n.Notify(context.Background(), results["success"])
			if (err != nil) != tt.wantErr {
				t.Fatalf("Notify() = %v, want error %v", err, tt.wantErr)
			}
			if tt.attempts > 0 && rc.count() != tt.attempts {
				t.Errorf("%d attempts, want %d", rc.count(), tt.attempts)
			}
			assertNoSecret(t, "SECRETxyz123", errString(err), logs.String())
		})
	}
}

func repeat(f func(http.ResponseWriter), n int) []func(http.ResponseWriter) {
	out := make([]func(http.ResponseWriter), n)
	for i := range out {
		out[i] = f
	}
	return out
}

func TestDeliveryFailuresKeepTheURLSecret(t *testing.T) {
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body so the server notices when the client gives up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(hang)
		hanging.Close()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	for name, base := range map[string]string{"hanging": hanging.URL, "refused": refused} {
		for _, format := range []string{"text", "json"} {
			t.Run(name+"/"+format, func(t *testing.T) {
				var logs bytes.Buffer
				var h slog.Handler = slog.NewTextHandler(&logs, nil)
				if format == "json" {
					h = slog.NewJSONHandler(&logs, nil)
				}
				hook := base + "/services/T000/B000/SECRETxyz123"
				n, _ := New(Options{WebhookURL: hook, Timeout: 1500 * time.Millisecond, AttemptTimeout: 300 * time.Millisecond, Logger: slog.New(h)})
				done := make(chan error, 1)
				go func() { done <- n.Notify(context.Background(), results["failure"]) }()
				select {
				case err := <-done:
					if err == nil {
						t.Fatal("Notify() succeeded")
					}
					assertNoSecret(t, "SECRETxyz123", err.Error(), logs.String())
				case <-time.After(30 * time.Second): // a sanity bound, far above the 1.5s budget
					t.Fatal("Notify() did not give up")
				}
			})
		}
	}
}

func TestBotToken(t *testing.T) {
	rc, _ := newReceiver(t)
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	n, err := New(Options{BotToken: "xoxb-SECRET-token", Channel: "#deploys", APIURL: srv.URL + "/api/", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), results["success"]); err != nil {
		t.Fatal(err)
	}
	if rc.count() != 1 || !strings.HasSuffix(rc.paths[0], "chat.postMessage") {
		t.Fatalf("requests %v", rc.paths)
	}
	body := string(rc.bodies[0])
	for _, w := range []string{"channel=%23deploys", "DB+migration+result"} {
		if !strings.Contains(body, w) {
			t.Errorf("chat.postMessage body lacks %q: %s", w, body)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"webhook", Options{WebhookURL: "https://hooks.slack.com/services/T/B/C"}, false},
		{"nothing", Options{}, false},
		{"not a URL", Options{WebhookURL: "hooks.slack.com/services/T/B/SECRET"}, true},
		{"bad scheme", Options{WebhookURL: "ftp://hooks.slack.com/SECRET"}, true},
		{"control character", Options{WebhookURL: "https://hooks.slack.com/\x7fSECRET"}, true},
		{"token without channel", Options{BotToken: "xoxb-SECRET"}, true},
		{"token with channel", Options{BotToken: "xoxb-SECRET", Channel: "#c"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			assertNoSecret(t, "SECRET", errString(err))
		})
	}
}

func TestPolicy(t *testing.T) {
	applied := results["success"]
	nothing := report.Result{Outcome: report.Succeeded, Output: "No DB migration"}
	lost := report.Result{Outcome: report.Succeeded, Lock: report.Lock{Lost: "connection reset"}}
	failed := results["failure"]
	tests := []struct {
		policy string
		want   []bool // applied, nothing, lost, failed
	}{
		{"always", []bool{true, true, true, true}},
		{"changes", []bool{true, false, true, true}},
		{"failures", []bool{false, false, true, true}},
		{"never", []bool{false, false, false, false}},
	}
	for _, tt := range tests {
		p, err := ParsePolicy(tt.policy)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range []report.Result{applied, nothing, lost, failed} {
			if got := p.Wants(r); got != tt.want[i] {
				t.Errorf("%s.Wants(case %d) = %v, want %v", tt.policy, i, got, tt.want[i])
			}
		}
	}
	if _, err := ParsePolicy("sometimes"); err == nil {
		t.Error("ParsePolicy(sometimes) succeeded")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:00:05 GMT": 5 * time.Second,
		"Wed, 31 Dec 2025 23:59:00 GMT": 0,
	}
	for in, want := range tests {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func assertNoSecret(t *testing.T, secret string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("secret leaked: %s", s)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func FuzzBuildMessage(f *testing.F) {
	for _, s := range []string{"", "```", "<!channel> & <http://x|y>", "\xff\x00", strings.Repeat("`", 50), "== 1 A: migrated (1s) =="} {
		f.Add(s, "production")
	}
	f.Fuzz(func(t *testing.T, output, env string) {
		m := BuildMessage(report.Result{Outcome: report.Failed, ExitCode: 1, Environment: env, Output: output}, Options{})
		body, err := json.Marshal(m)
		if err != nil || !json.Valid(body) {
			t.Fatalf("invalid JSON: %v", err)
		}
		if n := len([]rune(m.Text)); n > MaxText+len([]rune(env)) {
			t.Fatalf("text has %d characters", n)
		}
		block := m.Text[strings.Index(m.Text, "```\n")+4 : len(m.Text)-len("\n```")]
		if strings.Contains(block, "```") {
			t.Fatalf("output closes the code block: %q", block)
		}
		if strings.ContainsAny(block, "<>") {
			t.Fatalf("unescaped <>: %q", block)
		}
	})
}
