package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/redact"
)

const pgURL = "postgres://app:s3cretpw@db:5432/app_production"

func TestParseRun(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c *runConfig)
	}{
		{
			name: "defaults",
			env:  map[string]string{"DATABASE_URL": pgURL},
			check: func(t *testing.T, c *runConfig) {
				if !slices.Equal(c.command, defaultCommand) {
					t.Errorf("command = %q", c.command)
				}
				if c.LockTimeout != duration(30*time.Minute) || c.ConnectTimeout != duration(60*time.Second) {
					t.Errorf("timeouts = %v, %v", c.LockTimeout, c.ConnectTimeout)
				}
				if c.LockMode != "session" || c.LockName != "app_production" || c.Environment != "development" {
					t.Errorf("mode %q name %q env %q", c.LockMode, c.LockName, c.Environment)
				}
				if c.EmptyOutput != "No DB migration" || c.TerminationLog != "/dev/termination-log" || c.terminationLogSet {
					t.Errorf("empty %q termination log %q set %v", c.EmptyOutput, c.TerminationLog, c.terminationLogSet)
				}
				if c.OnLockLost != "stop" || c.DeadHolderTimeout != duration(30*time.Second) || c.KeepAlive != duration(5*time.Second) {
					t.Errorf("on lock lost %q, dead holder %v, keep-alive %v", c.OnLockLost, c.DeadHolderTimeout, c.KeepAlive)
				}
				if c.url.Password != "s3cretpw" || !bool(c.RubySync) || bool(c.SkipIfCurrent) {
					t.Errorf("URL or booleans not as expected")
				}
			},
		},
		{
			name: "flags win over the environment",
			args: []string{"--lock-timeout", "5s", "--lock-name=shared", "--environment", "staging", "--", "rake", "db:migrate"},
			env:  map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_TIMEOUT": "1h", "RAILS_ENV": "production", "MIGRUN_LOCK_NAME": "x"},
			check: func(t *testing.T, c *runConfig) {
				if c.LockTimeout != duration(5*time.Second) || c.LockName != "shared" || c.Environment != "staging" {
					t.Errorf("got %v %q %q", c.LockTimeout, c.LockName, c.Environment)
				}
				if !slices.Equal(c.command, []string{"rake", "db:migrate"}) {
					t.Errorf("command = %q", c.command)
				}
				if got := c.parsed.lookup(&c.LockTimeout).source; got != "--lock-timeout" {
					t.Errorf("lock timeout's source = %q", got)
				}
			},
		},
		{
			name: "MIGRUN_ variables win over the Rails ones",
			env:  map[string]string{"DATABASE_URL": "postgres://h/other", "MIGRUN_DATABASE_URL": pgURL, "RAILS_ENV": "production", "MIGRUN_ENVIRONMENT": "prod-eu"},
			check: func(t *testing.T, c *runConfig) {
				if c.url.Database != "app_production" || c.Environment != "prod-eu" {
					t.Errorf("database %q environment %q", c.url.Database, c.Environment)
				}
			},
		},
		{
			name: "RAILS_ENV names the environment, RACK_ENV after it",
			env:  map[string]string{"DATABASE_URL": pgURL, "RACK_ENV": "staging", "RAILS_ENV": "production"},
			check: func(t *testing.T, c *runConfig) {
				if c.Environment != "production" || c.parsed.lookup(&c.Environment).source != "RAILS_ENV" {
					t.Errorf("environment %q from %q", c.Environment, c.parsed.lookup(&c.Environment).source)
				}
			},
		},
		{
			name: "a termination log path that is given is created",
			env:  map[string]string{"DATABASE_URL": pgURL, "MIGRUN_TERMINATION_LOG": "/tmp/x"},
			check: func(t *testing.T, c *runConfig) {
				if !c.terminationLogSet || c.TerminationLog != "/tmp/x" {
					t.Errorf("termination log %q set %v", c.TerminationLog, c.terminationLogSet)
				}
			},
		},
		{
			// An empty variable is unset: migrun must not create
			// /dev/termination-log itself, which only the kubelet may.
			name: "an empty termination log variable is unset",
			env:  map[string]string{"DATABASE_URL": pgURL, "MIGRUN_TERMINATION_LOG": ""},
			check: func(t *testing.T, c *runConfig) {
				if c.terminationLogSet || c.TerminationLog != "/dev/termination-log" {
					t.Errorf("termination log %q set %v", c.TerminationLog, c.terminationLogSet)
				}
			},
		},
		{
			name: "command without --",
			args: []string{"--lock-mode=none", "echo", "hi"},
			check: func(t *testing.T, c *runConfig) {
				if !slices.Equal(c.command, []string{"echo", "hi"}) || c.url != nil {
					t.Errorf("command %q url %v", c.command, c.url)
				}
			},
		},
		{
			name: "keywords and booleans ignore case",
			env:  map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOG_FORMAT": "JSON", "MIGRUN_LOG_LEVEL": "Warn", "MIGRUN_LOCK_MODE": "Transaction", "MIGRUN_RUBY_SYNC": "FALSE", "MIGRUN_NOTIFY": "Changes"},
			check: func(t *testing.T, c *runConfig) {
				if c.LogFormat != "json" || c.LogLevel != "warn" || c.LockMode != "transaction" || c.RubySync || c.Notify != "changes" {
					t.Errorf("got %q %q %q %v %q", c.LogFormat, c.LogLevel, c.LockMode, c.RubySync, c.Notify)
				}
			},
		},
		{
			name: "old webhook variable",
			env:  map[string]string{"DATABASE_URL": pgURL, "SLACK_WEB_HOOK_URL": "https://hooks.slack.com/services/T/B/C"},
			check: func(t *testing.T, c *runConfig) {
				if c.SlackWebhookURL == "" {
					t.Errorf("SLACK_WEB_HOOK_URL not read")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRun(tt.args, tt.env, io.Discard)
			if err != nil {
				t.Fatalf("parseRun() error = %v", err)
			}
			tt.check(t, c)
		})
	}
}

// TestSettingErrors: bad input is one line that names the setting as it was
// given, shows the value unless it is a secret, and says how to fix it; a
// variable and its flag get the same explanation.
func TestSettingErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // the whole message
	}{
		{name: "no database URL", want: "no database: set DATABASE_URL (or MIGRUN_DATABASE_URL, --database-url), or its parts (PGHOST, PGDATABASE, ... or MIGRUN_DB_HOST, MIGRUN_DB_NAME, ...); MIGRUN_LOCK_MODE=none runs without a lock"},
		{name: "parts of both servers", env: map[string]string{"PGHOST": "db", "MYSQL_DATABASE": "app"}, want: `MYSQL_DATABASE="app": both PG* and MYSQL_* variables are set: say which server with MIGRUN_DB_ADAPTER`},
		{name: "parts without a server", env: map[string]string{"MIGRUN_DB_HOST": "db", "MIGRUN_DB_NAME": "app"}, want: `MIGRUN_DB_ADAPTER: the database is given in parts: say which server (postgresql, mysql2 or trilogy)`},
		{name: "a bad port in parts", env: map[string]string{"PGHOST": "db", "PGDATABASE": "app", "PGPORT": "fivefourthreetwo"}, want: "the database's parts: invalid database URL: bad port (want a number from 1 to 65535)"},
		{name: "a duration without a unit (variable)", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_TIMEOUT": "5"}, want: `MIGRUN_LOCK_TIMEOUT="5": a duration needs a unit, e.g. 5s or 5m`},
		{name: "a duration without a unit (flag)", args: []string{"--lock-timeout", "5"}, env: map[string]string{"DATABASE_URL": pgURL}, want: `--lock-timeout="5": a duration needs a unit, e.g. 5s or 5m`},
		{name: "not a duration", args: []string{"--connect-timeout=soon"}, env: map[string]string{"DATABASE_URL": pgURL}, want: `--connect-timeout="soon": not a duration (want e.g. 30s, 10m, 1h30m)`},
		{name: "negative", args: []string{"--lock-timeout=-1s"}, env: map[string]string{"DATABASE_URL": pgURL}, want: `--lock-timeout="-1s": a duration must not be negative`},
		{name: "zero", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_CONNECT_TIMEOUT": "0s"}, want: `MIGRUN_CONNECT_TIMEOUT="0s": must be positive`},
		{name: "a dead-holder timeout with no room", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_DEAD_HOLDER_TIMEOUT": "10s"}, want: `MIGRUN_DEAD_HOLDER_TIMEOUT="10s": too short for MIGRUN_KEEPALIVE_INTERVAL=5s and MIGRUN_STOP_TIMEOUT=10s: make it at least 24s, or shorten those`},
		{name: "unknown flag", args: []string{"--frobnicate"}, env: map[string]string{"DATABASE_URL": pgURL}, want: "unknown flag --frobnicate (see migrun run --help)"},
		{name: "unknown lock mode", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_MODE": "table"}, want: `MIGRUN_LOCK_MODE="table": want session, transaction or none`},
		{name: "unknown notify policy", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_NOTIFY": "sometimes"}, want: `MIGRUN_NOTIFY="sometimes": want always, changes, failures or never`},
		{name: "unknown log format", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOG_FORMAT": "xml"}, want: `MIGRUN_LOG_FORMAT="xml": want text or json`},
		{name: "bad boolean", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_RUBY_SYNC": "perhaps"}, want: `MIGRUN_RUBY_SYNC="perhaps": not a boolean (want true or false)`},
		{name: "empty command", args: []string{"--", ""}, env: map[string]string{"DATABASE_URL": pgURL}, want: "the command is empty (after --)"},
		{name: "a bad URL names the variable, not the value", env: map[string]string{"DATABASE_URL": "oracle://u:s3cretpw@h/db"}, want: `DATABASE_URL: invalid database URL: unsupported scheme "oracle" (want postgres, postgresql, mysql2, trilogy, sqlite3)`},
		{name: "malformed webhook", env: map[string]string{"DATABASE_URL": pgURL, "SLACK_WEBHOOK_URL": "not a url"}, want: "SLACK_WEBHOOK_URL: the Slack webhook URL is malformed: it must start with https:// (want https://hooks.slack.com/services/...)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseRun(tt.args, tt.env, io.Discard)
			if err == nil {
				t.Fatalf("parseRun() succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\nwant    %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cretpw") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one clean line: %q", err)
			}
		})
	}
}

// TestDatabaseParts: a database given as separate settings (libpq's
// variables, MySQL's, or migrun's own) needs no percent-encoding.
func TestDatabaseParts(t *testing.T) {
	const pw = "p@ss:/?#%w rd"
	tests := []struct {
		name string
		env  map[string]string
		want string // the redacted URL
	}{
		{"libpq variables", map[string]string{"PGHOST": "db", "PGPORT": "5433", "PGUSER": "app", "PGPASSWORD": pw, "PGDATABASE": "app_production", "PGSSLMODE": "require"},
			"postgresql://app:xxxxx@db:5433/app_production?sslmode=require"},
		{"MySQL variables", map[string]string{"MYSQL_HOST": "db", "MYSQL_USER": "app", "MYSQL_PWD": pw, "MYSQL_DATABASE": "app"},
			"mysql2://app:xxxxx@db/app"},
		{"migrun's own, trilogy", map[string]string{"MIGRUN_DB_ADAPTER": "Trilogy", "MIGRUN_DB_HOST": "db", "MIGRUN_DB_PASSWORD": pw, "MIGRUN_DB_NAME": "app"},
			"trilogy://:xxxxx@db/app"},
		{"a URL wins over parts", map[string]string{"DATABASE_URL": pgURL, "PGHOST": "elsewhere", "PGDATABASE": "other"},
			"postgresql://app:xxxxx@db:5432/app_production"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRun(nil, tt.env, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.url.Redacted(); got != tt.want {
				t.Errorf("URL %s, want %s", got, tt.want)
			}
			if tt.env["DATABASE_URL"] == "" && c.url.Password != pw {
				t.Errorf("password %q, want %q", c.url.Password, pw)
			}
			if got := scrubberFor(c, nil, tt.env).String(pw); strings.Contains(got, pw) && tt.env["DATABASE_URL"] == "" {
				t.Errorf("the password is not scrubbed: %q", got)
			}
			if env := withoutSecrets(tt.env, c.parsed.settings); env["PGPASSWORD"] != tt.env["PGPASSWORD"] || env["MYSQL_PWD"] != tt.env["MYSQL_PWD"] {
				t.Errorf("the command loses its database password")
			}
		})
	}
}

func TestLockElsewhere(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		warn bool
	}{
		{"the command's own URL", nil, map[string]string{"DATABASE_URL": pgURL}, false},
		{"the same database spelt otherwise", nil, map[string]string{"DATABASE_URL": pgURL, "MIGRUN_DATABASE_URL": "postgresql://other:pw@db/app_production?sslmode=require"}, false},
		{"another database", []string{"--database-url", "postgres://u:p@db/app_staging"}, map[string]string{"DATABASE_URL": pgURL}, true},
		{"another host", nil, map[string]string{"DATABASE_URL": pgURL, "MIGRUN_DATABASE_URL": "postgres://u:p@replica/app_production"}, true},
	}
	for _, tt := range tests {
		c, err := parseRun(tt.args, tt.env, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		got := c.lockElsewhere(tt.env)
		if (got != "") != tt.warn || strings.Contains(got, "s3cretpw") {
			t.Errorf("%s: lockElsewhere() = %q, want a warning: %v", tt.name, got, tt.warn)
		}
	}
}

func TestParseWait(t *testing.T) {
	if _, err := parseWait([]string{"--lock-timeout=5m"}, map[string]string{"DATABASE_URL": pgURL}, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown flag --lock-timeout") {
		t.Errorf("wait accepts run's --lock-timeout: %v", err)
	}
	if _, err := parseWait([]string{"--", "rake"}, map[string]string{"DATABASE_URL": pgURL}, io.Discard); err == nil || !strings.Contains(err.Error(), "takes no command") {
		t.Errorf("wait accepts a command: %v", err)
	}
	// Slack is not wait's business: a bad Slack setting must not stop it.
	c, err := parseWait(nil, map[string]string{"DATABASE_URL": pgURL, "SLACK_WEBHOOK_URL": "not a url", "MIGRUN_WAIT_TIMEOUT": "2m"}, io.Discard)
	if err != nil || c.WaitTimeout != duration(2*time.Minute) || c.url == nil || c.databases != nil {
		t.Fatalf("parseWait() = %+v, %v", c, err)
	}
}

// TestHelp: each command's help shows its own settings only, with built-in
// defaults, never the environment's values (which may be secrets).
func TestHelp(t *testing.T) {
	var run, wait strings.Builder
	env := map[string]string{"DATABASE_URL": "postgres://u:HelpSecret1@h/db", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/HelpSecret2"}
	if _, err := parseRun([]string{"--help"}, env, &run); !errors.Is(err, errHelp) {
		t.Fatalf("parseRun(--help) = %v", err)
	}
	if _, err := parseWait([]string{"-h"}, env, &wait); !errors.Is(err, errHelp) {
		t.Fatalf("parseWait(-h) = %v", err)
	}
	for _, want := range []string{"--lock-timeout", "MIGRUN_LOCK_TIMEOUT; default 30m", "--slack-webhook-url", "Usage: migrun run"} {
		if !strings.Contains(run.String(), want) {
			t.Errorf("run's help lacks %q:\n%s", want, run.String())
		}
	}
	for _, want := range []string{"--wait-timeout", "Usage: migrun wait"} {
		if !strings.Contains(wait.String(), want) {
			t.Errorf("wait's help lacks %q:\n%s", want, wait.String())
		}
	}
	for _, notWanted := range []string{"--lock-timeout", "--slack-webhook-url", "--skip-if-current"} {
		if strings.Contains(wait.String(), notWanted) {
			t.Errorf("wait's help shows run's %s", notWanted)
		}
	}
	if strings.Contains(run.String()+wait.String(), "HelpSecret") {
		t.Errorf("help shows a secret")
	}
}

func TestScrubberFor(t *testing.T) {
	args := []string{"--database-url", "postgres://u:p%40ss@h/db", "--slack-webhook-url=https://hooks.slack.com/services/X", "--", "x"}
	env := map[string]string{"DATABASE_URL": "mysql2://root:top secret@h/db", "SLACK_BOT_TOKEN": "xoxb-1", "ANIMALS_DATABASE_URL": "postgres://a:zoo-pw@h/zoo"}
	c, _ := parseRun(args, env, io.Discard)
	scrub := scrubberFor(c, args, env)
	for _, secret := range []string{"p%40ss", "p@ss", "top secret", "xoxb-1", "https://hooks.slack.com/services/X", "zoo-pw"} {
		if got := scrub.String("says " + secret); strings.Contains(got, secret) {
			t.Errorf("scrubber leaves %q: %q", secret, got)
		}
	}
}

// TestCommandEnvironment: the command gets the database URLs it needs but
// not the Slack secrets, which only migrun uses.
func TestCommandEnvironment(t *testing.T) {
	env := map[string]string{"DATABASE_URL": pgURL, "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/C", "SLACK_WEB_HOOK_URL": "https://hooks.slack.com/services/T/B/D", "SLACK_BOT_TOKEN": "xoxb-1", "PATH": "/bin"}
	c, err := parseRun(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := withoutSecrets(env, c.parsed.settings)
	for _, k := range []string{"SLACK_WEBHOOK_URL", "SLACK_WEB_HOOK_URL", "SLACK_BOT_TOKEN"} {
		if _, ok := got[k]; ok {
			t.Errorf("the command would get %s", k)
		}
	}
	if got["DATABASE_URL"] != pgURL || got["PATH"] != "/bin" {
		t.Errorf("the command lost its environment: %v", got)
	}
}

// TestLogLines: a line's time is in UTC whatever the machine's zone, and
// durations are in seconds, in both formats.
func TestLogLines(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out strings.Builder
			log := newLogger(&LogSettings{LogFormat: logFormat(format)}, &out, redact.New())
			at := time.Date(2026, 12, 2, 14, 30, 0, 0, paris) // 13:30 UTC
			r := slog.NewRecord(at, slog.LevelInfo, "lock acquired", 0)
			r.AddAttrs(slog.Duration("waited", 1500*time.Millisecond))
			if err := log.Handler().Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			line := out.String()
			// text: 2026-12-02T13:30:00.000Z; json: 2026-12-02T13:30:00Z
			if !regexp.MustCompile(`2026-12-02T13:30:00(\.000)?Z`).MatchString(line) {
				t.Errorf("log line %q: want its time as 13:30 UTC", line)
			}
			if !strings.Contains(line, "1.5") {
				t.Errorf("log line %q: want the duration in seconds, 1.5", line)
			}
		})
	}
}
