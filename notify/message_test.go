package notify

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
)

// roundTrip posts r to a stand-in for Slack and returns what it received.
func roundTrip(t *testing.T, r report.Result) slack.WebhookMessage {
	t.Helper()
	rc, _, hook := newReceiver(t)
	if err := mustNew(t, testOptions(hook, io.Discard)).Notify(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	got := rc.received()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	var m slack.WebhookMessage
	if err := json.Unmarshal(got[0].body, &m); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	return m
}

// block is the code block of a message's text, as Slack shows it: fence
// breakers gone and entities decoded.
func block(t *testing.T, text string) string {
	t.Helper()
	start := strings.Index(text, "```\n")
	if start < 0 || !strings.HasSuffix(text, "\n```") || start+4 > len(text)-4 {
		t.Fatalf("no code block at the end of the text:\n%q", text)
	}
	b := text[start+4 : len(text)-4]
	if strings.Contains(b, "```") {
		t.Fatalf("the output closes the code block early:\n%q", b)
	}
	if strings.ContainsAny(b, "<>") || strings.Contains(strings.NewReplacer("&amp;", "", "&lt;", "", "&gt;", "").Replace(b), "&") {
		t.Fatalf("unescaped <, > or & in the code block:\n%q", b)
	}
	return unescape(b)
}

func unescape(s string) string {
	return strings.NewReplacer(zwsp, "", "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// TestHostileOutput: whatever the migration printed arrives as the text
// that was printed, escaped for Slack, inside one code block.
func TestHostileOutput(t *testing.T) {
	tests := []struct {
		name, output, shown string
		rawAbsent           []string // must not be in the text as sent
	}{
		{name: "quotes, backslashes, newlines, tabs", output: "say \"hi\" 'there' \\ back\\slash\\n\n\ttab\n\n  indented"},
		{name: "mentions and links", output: "<!channel> <!here> <@U123> <http://x|y> a&b &amp;",
			rawAbsent: []string{"<!channel>", "<!here>", "<@U123>", "<http://x|y>", "a&b"}},
		{name: "fences", output: "```\nbefore ``` after ````` end`\n```", rawAbsent: []string{"```\nbefore", "``` after"}},
		{name: "fence at the edges", output: "``", rawAbsent: []string{"````"}},
		{name: "invalid UTF-8", output: "bad \xff\xfe byte \xe2\x82", shown: "bad \uFFFD byte \uFFFD"},
		{name: "NUL and other controls", output: "a\x00b\x07c\x7fd", shown: "a\uFFFDb\uFFFDc\uFFFDd", rawAbsent: []string{"\x00", "\x07", "\x7f"}},
		{name: "terminal colours", output: "\x1b[1m\x1b[36mUser Load (0.4ms)\x1b[0m  \x1b[1m\x1b[34mSELECT 1\x1b[0m\x1b",
			shown: "User Load (0.4ms)  SELECT 1", rawAbsent: []string{"\x1b", "[0m"}},
		{name: "CRLF and CR", output: "one\r\ntwo\rthree\r\n", shown: "one\ntwo\nthree\n"},
		{name: "unicode", output: "migrated 🎉 données 数据", shown: "migrated 🎉 données 数据"},
		{name: "only whitespace", output: " \n\t\n", shown: noOutput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := roundTrip(t, report.Result{Outcome: report.Failed, ExitCode: 1, Environment: "<!channel> prod", Output: tt.output})
			want := tt.shown
			if want == "" {
				want = tt.output
			}
			if got := block(t, m.Text); got != want {
				t.Errorf("shown\n%q\nwant\n%q", got, want)
			}
			for _, s := range tt.rawAbsent {
				if strings.Contains(m.Text, s) {
					t.Errorf("text contains %q:\n%q", s, m.Text)
				}
			}
			if !strings.HasPrefix(m.Text, "DB migration failed in &lt;!channel&gt; prod\nDB migration result: failed (exit 1)\n```\n") {
				t.Errorf("heading:\n%q", m.Text)
			}
			if strings.Count(m.Text, "```") != 2 {
				t.Errorf("%d fences, want 2:\n%q", strings.Count(m.Text, "```"), m.Text)
			}
		})
	}
}

// TestHugeOutputIsBounded: 2 MiB of output (16 times what the runner
// captures), including the characters that grow most when escaped, is cut
// to the bound keeping the head and the tail, where Rails prints its error.
func TestHugeOutputIsBounded(t *testing.T) {
	const size = 2 << 20
	tests := map[string]string{
		"lines":            "line of <output> & more\n",
		"one long line":    "x",
		"angle brackets":   "<",
		"backticks":        "`",
		"multibyte":        "数",
		"emoji":            "🎉\n",
		"invalid UTF-8":    "\xffa",
		"colour sequences": "\x1b[1m\x1b[0m",
	}
	for name, unit := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := "HEAD\n" + strings.Repeat(unit, size/len(unit)) + "\nrails aborted!\nStandardError: THE ERROR\n"
			r := report.Result{Outcome: report.Failed, ExitCode: 1, Environment: "prod", Output: out}
			m := *BuildMessage(r, Options{})
			if name == "lines" {
				m = roundTrip(t, r) // once through the stand-in for Slack
			}
			if len(m.Text) > MaxText {
				t.Fatalf("text has %d bytes, want at most %d", len(m.Text), MaxText)
			}
			if !utf8.ValidString(m.Text) {
				t.Fatal("text is not valid UTF-8")
			}
			shown := block(t, m.Text)
			if !strings.HasPrefix(shown, "HEAD\n") || !strings.HasSuffix(shown, "rails aborted!\nStandardError: THE ERROR\n") {
				t.Errorf("head or tail lost:\n%.200q\n...\n%q", shown, shown[max(0, len(shown)-200):])
			}
			if name == "colour sequences" {
				return // nothing left to cut once the sequences are gone
			}
			if !strings.Contains(shown, " bytes omitted ...]\n") {
				t.Errorf("no omission marker")
			}
			if len(m.Text) < MaxText/2 {
				t.Errorf("text has only %d bytes: the bound is not used", len(m.Text))
			}
		})
	}
}

func TestFieldsAreBounded(t *testing.T) {
	long := strings.Repeat("<&>", 10000)
	m := BuildMessage(report.Result{Outcome: report.Failed, ExitCode: 1, Environment: long, Host: long, App: long, Revision: long,
		Err: long + "\n<!channel>", Lock: report.Lock{Lost: long}}, Options{})
	if len(m.Text) > MaxText {
		t.Errorf("text has %d bytes", len(m.Text))
	}
	for _, f := range m.Attachments[0].Fields {
		if len(f.Value) > maxMigFields || strings.ContainsAny(f.Value, "<>\n") {
			t.Errorf("field %s: %d bytes, unescaped or on more than one line: %.80q", f.Title, len(f.Value), f.Value)
		}
	}
	if len(m.Attachments[0].Fallback) > maxField {
		t.Errorf("fallback has %d bytes", len(m.Attachments[0].Fallback))
	}
}

// TestEverythingLongIsBounded: every value at its worst (long, all of it
// characters that grow when escaped), a link of MaxLink bytes of "&" and
// output that grows most: each message stays within MaxText and each line
// and field within its budget.
func TestEverythingLongIsBounded(t *testing.T) {
	long := strings.Repeat("<&>", 10000)
	var migs []rails.Migration
	for range 200 {
		migs = append(migs, rails.Migration{Version: "20240101000000", Name: long[:300], Action: "migrated"})
	}
	r := report.Result{Outcome: report.Failed, ExitCode: 1, Environment: long, Host: long, Namespace: long, App: long, Revision: long,
		Err: long, Lock: report.Lock{Lost: long}, Output: strings.Repeat("&", 1<<20), Pending: []string{long, long},
		Link:       "https://x.example/?" + strings.Repeat("&", report.MaxLink-len("https://x.example/?")),
		Migrations: migs, FailedMigration: &rails.Migration{Version: long, Name: long, Action: "migrating"},
		Started: time.Unix(1, 0)}
	for name, m := range map[string]*slack.WebhookMessage{
		"result": BuildMessage(r, Options{}), "running": buildRunningMessage(r, Options{}), "finished notice": buildFinishedNotice(r),
	} {
		if len(m.Text) > MaxText || !utf8.ValidString(m.Text) {
			t.Errorf("%s: text has %d bytes", name, len(m.Text))
		}
		lines := strings.Split(m.Text, "\n")
		if len(lines[0]) > maxHeadline {
			t.Errorf("%s: headline has %d bytes", name, len(lines[0]))
		}
		for _, f := range m.Attachments[0].Fields {
			if len(f.Value) > maxMigFields || strings.ContainsAny(f.Value, "<>") {
				t.Errorf("%s: field %s: %d bytes or unescaped: %.80q", name, f.Title, len(f.Value), f.Value)
			}
		}
		if len(m.Attachments[0].Fallback) > maxField {
			t.Errorf("%s: fallback has %d bytes", name, len(m.Attachments[0].Fallback))
		}
	}
	if m := BuildMessage(r, Options{}); !strings.Contains(m.Text, "|x.example>\n```") {
		t.Errorf("the link is left out:\n%.1000s", m.Text)
	}
}

func TestOptionsInMessage(t *testing.T) {
	m := BuildMessage(results["success"], Options{Channel: "#ops", Username: "migrun", IconEmoji: ":rocket:"})
	if m.Channel != "#ops" || m.Username != "migrun" || m.IconEmoji != ":rocket:" {
		t.Errorf("channel %q username %q icon %q", m.Channel, m.Username, m.IconEmoji)
	}
	if m := BuildMessage(results["success"], Options{}); m.Channel != "" {
		t.Errorf("channel %q, want the webhook's own (empty)", m.Channel)
	}
}

func FuzzBuildMessage(f *testing.F) {
	for _, s := range []string{"", "```", "<!channel> & <http://x|y>", "\xff\x00", strings.Repeat("`", 50), "== 1 A: migrated (1s) ==", "a\r\n\x1b[1mb\x1b[0m"} {
		f.Add(s, "production", "lock not acquired in 30m0s", "https://argocd.example.com/a?b=c&d=<e>|f")
	}
	f.Fuzz(func(t *testing.T, output, env, errText, link string) {
		r := report.Result{Outcome: report.Failed, ExitCode: 1, Environment: env, Output: output, Err: errText, Host: env, Link: link,
			FailedMigration: &rails.Migration{Version: "1", Name: env}, Pending: []string{env, errText}, Started: time.Unix(1, 0)}
		m := BuildMessage(r, Options{})
		body, err := json.Marshal(m)
		if err != nil || !json.Valid(body) {
			t.Fatalf("invalid JSON: %v", err)
		}
		if len(m.Text) > MaxText {
			t.Fatalf("text has %d bytes", len(m.Text))
		}
		if !strings.HasPrefix(m.Text, "DB migration failed") || !strings.Contains(m.Text, "\nDB migration result: failed (exit 1) at 1") || !utf8.ValidString(m.Text) {
			t.Fatalf("text: %q", m.Text)
		}
		shown := block(t, m.Text)
		if c := report.CleanOutput(output); strings.TrimSpace(c) != "" && cost(c) <= outputBudget && shown != c {
			t.Fatalf("shown %q, want %q", shown, c)
		}
		assertNoMarkup(t, m.Text[:strings.Index(m.Text, "```")], 1)
		for _, f := range m.Attachments[0].Fields {
			if strings.ContainsAny(f.Value, "<>") || !utf8.ValidString(f.Value) {
				t.Fatalf("field %s: %q", f.Title, f.Value)
			}
		}
		running := buildRunningMessage(r, Options{})
		if !utf8.ValidString(running.Text) || len(running.Text) > MaxText {
			t.Fatalf("running text: %q", running.Text)
		}
		assertNoMarkup(t, running.Text, 2) // the date and the link
		for _, f := range running.Attachments[0].Fields {
			if strings.ContainsAny(f.Value, "<>") || !utf8.ValidString(f.Value) {
				t.Fatalf("running field %s: %q", f.Title, f.Value)
			}
		}
	})
}

// assertNoMarkup: text holds at most max Slack constructs (<...>), each one
// migrun made (a date or an http(s) link whose target ends at the |), and
// no other < or >.
func assertNoMarkup(t *testing.T, text string, max int) {
	t.Helper()
	n := 0
	for rest := text; ; {
		i := strings.IndexAny(rest, "<>")
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if rest[i] == '>' || j < 0 {
			t.Fatalf("a stray < or > in %q", text)
		}
		c := rest[i+1 : i+j]
		ok := strings.HasPrefix(c, "!date^") || (strings.HasPrefix(c, "https://") || strings.HasPrefix(c, "http://")) && strings.Count(c, "|") == 1
		if !ok || strings.ContainsAny(c, "<\n") {
			t.Fatalf("construct <%s> in %q", c, text)
		}
		n++
		rest = rest[i+j+1:]
	}
	if n > max {
		t.Fatalf("%d constructs in %q, want at most %d", n, text, max)
	}
}
