package main

import (
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/report"
)

func TestParseStatus(t *testing.T) {
	env := map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_TIMEOUT": "5m", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/StatusSecret1"}
	c, err := parseStatus([]string{"--format", "JSON", "--notify-test", "--progress-interval=7s"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != "json" || !bool(c.NotifyTest) || c.url == nil || c.LockName != "app_production" {
		t.Errorf("format %q, notify test %v, url %v, lock name %q", c.Format, c.NotifyTest, c.url, c.LockName)
	}
	// Where each value came from, as the one parser recorded it.
	got := map[string]statusSetting{}
	for _, s := range settingsReport(c.parsed, redact.New()) {
		got[s.Variable] = s
	}
	for variable, want := range map[string]statusSetting{
		"MIGRUN_DATABASE_URL":       {Value: redact.Mask, Source: "variable", From: "DATABASE_URL"},
		"SLACK_WEBHOOK_URL":         {Value: redact.Mask, Source: "variable", From: "SLACK_WEBHOOK_URL"},
		"MIGRUN_LOCK_TIMEOUT":       {Value: "5m0s", Source: "variable", From: "MIGRUN_LOCK_TIMEOUT"},
		"MIGRUN_PROGRESS_INTERVAL":  {Value: "7s", Source: "flag", From: "--progress-interval"},
		"MIGRUN_STATUS_FORMAT":      {Value: "json", Source: "flag", From: "--format"},
		"MIGRUN_CONNECT_TIMEOUT":    {Value: "1m0s", Source: "default"},
		"MIGRUN_LOCK_NAME":          {Value: "app_production", Source: "derived"},
		"MIGRUN_APP":                {Value: "", Source: "unset"},
		"MIGRUN_SKIP_IF_CURRENT":    {Value: "false", Source: "default"},
		"MIGRUN_STATUS_NOTIFY_TEST": {Value: "true", Source: "flag", From: "--notify-test"},
	} {
		s := got[variable]
		if s.Value != want.Value || s.Source != want.Source || s.From != want.From {
			t.Errorf("%s: %+v, want %+v", variable, s, want)
		}
	}

	for _, tt := range []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{[]string{"--", "rails", "db:migrate"}, env, "migrun status takes no command"},
		{[]string{"--format", "yaml"}, env, `--format="yaml": want text or json`},
		{nil, map[string]string{}, "no database"},
		{[]string{"--lock-timeout", "5"}, env, "a duration needs a unit"},
	} {
		if _, err := parseStatus(tt.args, tt.env, io.Discard); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseStatus(%q) = %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}

// TestStatusHelp: status has its help and is in the overview, with its
// own flags and run's, and shows no secret (help --json: TestHelpJSON).
func TestStatusHelp(t *testing.T) {
	env := map[string]string{"DATABASE_URL": pgURL, "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/StatusSecret2"}
	var help strings.Builder
	if _, err := parseStatus([]string{"--help"}, env, &help); !errors.Is(err, errHelp) {
		t.Fatalf("parseStatus(--help) = %v", err)
	}
	for _, want := range []string{"Usage: migrun status", "--format", "--notify-test", "--lock-timeout", "MIGRUN_STATUS_FORMAT; default text"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("status's help lacks %q", want)
		}
	}
	res := runMainWith(t, env, "status", "--help")
	if res.status != 0 || !strings.Contains(res.stdout, "Usage: migrun status") || strings.Contains(res.stdout+help.String(), "StatusSecret2") || strings.Contains(res.stdout, "s3cretpw") {
		t.Errorf("status --help: %d\n%s", res.status, res.stdout)
	}
	if res := runMainWith(t, nil, "help"); !strings.Contains(res.stdout, "migrun status [flags]") {
		t.Errorf("the overview lacks status:\n%s", res.stdout)
	}
}

// TestStatusExitStatus: status's statuses come from report's one table.
func TestStatusExitStatus(t *testing.T) {
	for outcome, want := range map[report.Outcome]int{report.Healthy: 0, report.Unhealthy: 1, report.ConfigError: 64} {
		d := &statusDoc{outcome: outcome}
		d.settle()
		if d.ExitStatus != want || d.OK != (want == 0) || d.Problems == nil {
			t.Errorf("%s: exit %d ok %v, want %d", outcome, d.ExitStatus, d.OK, want)
		}
	}
	res := runMainWith(t, map[string]string{"DATABASE_URL": pgURL}, "status", "--lock-mode", "sometimes")
	if res.status != 64 || !strings.Contains(res.stderr, "--lock-mode") {
		t.Errorf("bad setting: %d %s", res.status, res.stderr)
	}
}

// TestStatusJSONScrubbed: status --format json masks a secret in a
// setting's value with redact.Mask, also one with <, > and & (which HTML
// escaping would hide from the last scrub as \u003c...), and stays valid
// JSON; when masking would break the document (a secret that is also JSON
// syntax), every string is scrubbed one by one instead.
func TestStatusJSONScrubbed(t *testing.T) {
	hook := "https://hooks.slack.com/services/T0/B0/Se<cr&t>9"
	env := map[string]string{
		"DATABASE_URL":      "sqlite3:" + filepath.Join(t.TempDir(), "db.sqlite3"),
		"SLACK_WEBHOOK_URL": hook,
		"MIGRUN_APP":        "app posting to " + hook,
	}
	res := runMainWith(t, env, "status", "--format", "json")
	var doc struct {
		Settings []statusSetting `json:"settings"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("status --format json is not JSON (%v):\n%s", err, res.stdout)
	}
	for _, leak := range []string{"Se<cr&t>9", `Se\u003ccr\u0026t\u003e9`, "[redacted]"} {
		if strings.Contains(res.stdout+res.stderr, leak) {
			t.Errorf("status shows %q:\n%s\n%s", leak, res.stdout, res.stderr)
		}
	}
	values := map[string]string{}
	for _, s := range doc.Settings {
		values[s.Variable] = s.Value
	}
	if values["SLACK_WEBHOOK_URL"] != redact.Mask || values["MIGRUN_APP"] != "app posting to "+redact.Mask {
		t.Errorf("SLACK_WEBHOOK_URL %q, MIGRUN_APP %q", values["SLACK_WEBHOOK_URL"], values["MIGRUN_APP"])
	}

	d := &statusDoc{outcome: report.Unhealthy, scrub: redact.New(`"ok"`), Problems: []string{`the "ok" value`}}
	d.settle()
	var b strings.Builder
	d.writeJSON(&b)
	var back struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatalf("the fallback is not JSON (%v):\n%s", err, b.String())
	}
	if back.OK || len(back.Problems) != 1 || back.Problems[0] != "the "+redact.Mask+" value" {
		t.Errorf("fallback: %+v\n%s", back, b.String())
	}
}

// TestLockSettingsRefusedByBoth: settings the lock refuses (transaction
// mode off PostgreSQL) are a configuration error, in run and in status
// alike (64, one line naming MIGRUN_LOCK_MODE): status never calls such a
// lock free.
func TestLockSettingsRefusedByBoth(t *testing.T) {
	for _, url := range []string{"mysql2://app:s3cretpw@db:3306/app", "sqlite3:" + filepath.Join(t.TempDir(), "db.sqlite3")} {
		env := map[string]string{"DATABASE_URL": url, "MIGRUN_LOCK_MODE": "transaction"}
		for _, args := range [][]string{{"run", "--", "true"}, {"status"}, {"status", "--format", "json"}} {
			res := runMainWith(t, env, args...)
			lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
			if res.status != 64 || len(lines) != 1 || !strings.Contains(lines[0], "MIGRUN_LOCK_MODE") || !strings.Contains(lines[0], "PostgreSQL only") || strings.Contains(res.stdout, `"free"`) {
				t.Errorf("%s %q: exit %d\nstderr: %s\nstdout: %s", url, args, res.status, res.stderr, res.stdout)
			}
		}
	}
}
