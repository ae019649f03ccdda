package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/migrun/migrun/rails"
)

func TestDocument(t *testing.T) {
	started := time.Date(2026, 1, 2, 14, 2, 3, 123456789, time.FixedZone("CET", 3600))
	r := Result{
		Outcome: Failed, ExitCode: 1, Err: "", Environment: "production", App: "shop", Revision: "v1.2.3",
		Host: "migrate-7f9c", Namespace: "web", Link: "https://argocd.example.com/applications/shop",
		Started: started, Duration: 75*time.Second + 500*time.Millisecond,
		Output:          "\x1b[1mSQL\x1b[0m\r\nrails aborted!\n",
		Omitted:         10,
		Migrations:      []rails.Migration{{Version: "20240101000000", Name: "CreateUsers", Action: "migrated", Duration: 31400 * time.Microsecond}},
		FailedMigration: &rails.Migration{Version: "20240102000000", Name: "AddFlag", Action: "migrating"},
		Pending:         []string{"20240102000000 AddFlag"},
		Lock:            Lock{Mode: "session", Name: "migrun", Acquired: true, Waited: 2 * time.Second, Timeout: 30 * time.Minute},
		Attempts:        []Attempt{{Started: started.Add(2 * time.Second), Duration: 73 * time.Second, ExitCode: 1, Reason: "failed (exit 1)"}},
	}
	got := encode(t, r.Document())
	want := `{"schema":"migrun.result/v1","outcome":"failed","severity":"failure",` +
		`"headline":"DB migration failed in production (shop v1.2.3)","description":"failed (exit 1)",` +
		`"exit_status":1,"exit_code":1,"signal":null,"environment":"production","app":"shop","revision":"v1.2.3",` +
		`"host":"migrate-7f9c","namespace":"web","link":"https://argocd.example.com/applications/shop",` +
		`"started":"2026-01-02T13:02:03.123Z","finished":"2026-01-02T13:03:18.623Z","duration_seconds":75.5,` +
		`"migrations":[{"version":"20240101000000","name":"CreateUsers","action":"migrated","seconds":0.031}],` +
		`"failed_migration":{"version":"20240102000000","name":"AddFlag","action":"migrating","seconds":0},` +
		`"pending":["20240102000000 AddFlag"],` +
		`"lock":{"mode":"session","name":"migrun","acquired":true,"waited_seconds":2,"timeout_seconds":1800,"lost":false,"lost_reason":"","command_stopped":false},` +
		`"error":"","output":"SQL\nrails aborted!\n","output_omitted_bytes":10,` +
		`"attempts":[{"started":"2026-01-02T13:02:05.123Z","duration_seconds":73,"exit_status":1,"reason":"failed (exit 1)"}]}`
	if got != want {
		t.Errorf("document\n%s\nwant\n%s", got, want)
	}
}

// TestDocumentNulls: what does not apply is null or empty, never missing.
func TestDocumentNulls(t *testing.T) {
	tests := []struct {
		r        Result
		contains []string
	}{
		{Result{Outcome: LockTimeout, ExitCode: -1}, []string{`"exit_code":null`, `"signal":null`, `"started":null`, `"finished":null`,
			`"migrations":[]`, `"failed_migration":null`, `"pending":[]`, `"attempts":[]`, `"exit_status":75`, `"severity":"warning"`, `"output":""`}},
		{Result{Outcome: Killed, ExitCode: -1, Signal: 15, Attempts: []Attempt{{ExitCode: -1, Signal: 15}}},
			[]string{`"exit_code":null`, `"signal":"SIGTERM"`, `"exit_status":143`, `"attempts":[{"started":null,"duration_seconds":0,"exit_status":143,"reason":""}]`}},
		{Result{Outcome: InternalError, ExitCode: -1, Attempts: []Attempt{{ExitCode: -1}}}, []string{`"exit_status":null`}},
		{Result{Outcome: Succeeded, Lock: Lock{Lost: "backend terminated"}}, []string{`"severity":"warning"`, `"lost":true,"lost_reason":"backend terminated"`}},
		{Result{}, []string{`"outcome":"unknown"`, `"description":"unknown outcome"`, `"exit_status":70`}},
		{Result{Outcome: "rolled back"}, []string{`"outcome":"rolled back"`, `"severity":"failure"`, `"exit_status":70`, `"headline":"DB migration: rolled back"`}},
	}
	for _, tt := range tests {
		got := encode(t, tt.r.Document())
		for _, c := range tt.contains {
			if !strings.Contains(got, c) {
				t.Errorf("%q: document lacks %s:\n%s", tt.r.Outcome, c, got)
			}
		}
	}
}

func TestDocumentOutputIsBounded(t *testing.T) {
	out := "HEAD\n" + strings.Repeat("数据 <&>\n", 1<<16) + "rails aborted!\nTHE ERROR\n"
	d := Result{Outcome: Failed, ExitCode: 1, Output: out, Omitted: 5}.Document()
	if len(d.Output) > MaxDocumentOutput || len(d.Output) < MaxDocumentOutput*3/4 || !utf8.ValidString(d.Output) {
		t.Fatalf("output of %d bytes (valid UTF-8: %v)", len(d.Output), utf8.ValidString(d.Output))
	}
	if !strings.HasPrefix(d.Output, "HEAD\n") || !strings.HasSuffix(d.Output, "rails aborted!\nTHE ERROR\n") {
		t.Errorf("head or tail lost")
	}
	head, tail := keptParts(t, out, d.Output)
	if want := int64(len(out)-len(head)-len(tail)) + 5; d.OutputOmitted != want {
		t.Errorf("omitted %d, want %d", d.OutputOmitted, want)
	}
}

// keptParts splits a bounded text around its marker into the head and the
// tail of the original it kept, checking that they are.
func keptParts(t *testing.T, original, bounded string) (head, tail string) {
	t.Helper()
	marker := markerIn(t, bounded)
	i := strings.Index(bounded, marker)
	head, tail = bounded[:i], bounded[i+len(marker):]
	if !strings.HasPrefix(original, head) {
		head = strings.TrimSuffix(head, "\n") // the marker's own line break
	}
	if !strings.HasPrefix(original, head) || !strings.HasSuffix(original, tail) {
		t.Fatalf("kept parts are not the original's head and tail")
	}
	return head, tail
}

// markerIn is the omission marker line in s.
func markerIn(t *testing.T, s string) string {
	t.Helper()
	i := strings.Index(s, "[... migrun: ")
	j := strings.Index(s[max(i, 0):], " bytes omitted ...]\n")
	if i < 0 || j < 0 {
		t.Fatalf("no marker in %.100q", s)
	}
	return s[i : i+j+len(" bytes omitted ...]\n")]
}

func TestBoundOutput(t *testing.T) {
	for _, s := range []string{"short", strings.Repeat("x", 1000), strings.Repeat("é", 1000), strings.Repeat("line\n", 300)} {
		got, cut := boundOutput(s, 500)
		if len(got) > 500 || !utf8.ValidString(got) {
			t.Errorf("%.20q: %d bytes, valid %v", s, len(got), utf8.ValidString(got))
		}
		if len(s) <= 500 && (got != s || cut != 0) {
			t.Errorf("%.20q: cut although it fits", s)
		}
		if len(s) > 500 {
			head, tail := keptParts(t, s, got)
			if len(head)+len(tail)+cut != len(s) {
				t.Errorf("%.20q: kept %d + %d, cut %d, of %d", s, len(head), len(tail), cut, len(s))
			}
		}
	}
}

func TestCleanOutput(t *testing.T) {
	tests := map[string]string{
		"plain\ttext\n":              "plain\ttext\n",
		"\x1b[31mred\x1b[0m":         "red",
		"\x1b[38;5;208mcolour\x1b[m": "colour",
		"\x1b[":                      "",
		"\x1b[12\nx":                 "\nx",
		"\x1bM up":                   " up",
		"\x1b\xc3\xa9":               "é",
		"a\r\nb\rc":                  "a\nb\nc",
		"nul\x00":                    "nul\uFFFD",
		"bad\xc3":                    "bad\uFFFD",
	}
	for in, want := range tests {
		if got := CleanOutput(in); got != want {
			t.Errorf("CleanOutput(%q) = %q, want %q", in, got, want)
		}
	}
}

func encode(t *testing.T, d Document) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
