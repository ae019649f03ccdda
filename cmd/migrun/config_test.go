package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/lock"
)

func TestParseRun(t *testing.T) {
	const pgURL = "postgres://app:s3cretpw@db:5432/app_production"
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c *config)
		wantErr string // substring of the error; "" means success
	}{
		{
			name: "defaults",
			env:  map[string]string{"DATABASE_URL": pgURL},
			check: func(t *testing.T, c *config) {
				if !slices.Equal(c.Command, defaultCommand) {
					t.Errorf("command = %q", c.Command)
				}
				if c.LockTimeout != 30*time.Minute || c.ConnectTimeout != 60*time.Second {
					t.Errorf("timeouts = %s, %s", c.LockTimeout, c.ConnectTimeout)
				}
				if c.Mode != lock.ModeSession || c.LockName != "app_production" || c.Environment != "development" {
					t.Errorf("mode %q name %q env %q", c.Mode, c.LockName, c.Environment)
				}
				if c.EmptyOutput != "No DB migration" || c.TerminationLog != defaultTerminationLog || c.TerminationLogExplicit {
					t.Errorf("empty %q termination log %q explicit %v", c.EmptyOutput, c.TerminationLog, c.TerminationLogExplicit)
				}
				if c.URL.Password != "s3cretpw" {
					t.Errorf("URL not parsed")
				}
			},
		},
		{
			name: "flags win over the environment",
			args: []string{"--lock-timeout", "5s", "--lock-name=shared", "--environment", "staging", "--", "rake", "db:migrate"},
			env:  map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_TIMEOUT": "1h", "RAILS_ENV": "production", "MIGRUN_LOCK_NAME": "x"},
			check: func(t *testing.T, c *config) {
				if c.LockTimeout != 5*time.Second || c.LockName != "shared" || c.Environment != "staging" {
					t.Errorf("got %s %q %q", c.LockTimeout, c.LockName, c.Environment)
				}
				if !slices.Equal(c.Command, []string{"rake", "db:migrate"}) {
					t.Errorf("command = %q", c.Command)
				}
			},
		},
		{
			name: "MIGRUN_ variables win over the Rails ones",
			env:  map[string]string{"DATABASE_URL": "postgres://h/other", "MIGRUN_DATABASE_URL": pgURL, "RAILS_ENV": "production", "MIGRUN_ENVIRONMENT": "prod-eu"},
			check: func(t *testing.T, c *config) {
				if c.URL.Database != "app_production" || c.Environment != "prod-eu" {
					t.Errorf("database %q environment %q", c.URL.Database, c.Environment)
				}
			},
		},
		{
			name: "RAILS_ENV labels the environment",
			env:  map[string]string{"DATABASE_URL": pgURL, "RAILS_ENV": "production"},
			check: func(t *testing.T, c *config) {
				if c.Environment != "production" {
					t.Errorf("environment %q", c.Environment)
				}
			},
		},
		{
			name: "explicit termination log",
			env:  map[string]string{"DATABASE_URL": pgURL, "MIGRUN_TERMINATION_LOG": "/tmp/x"},
			check: func(t *testing.T, c *config) {
				if !c.TerminationLogExplicit || c.TerminationLog != "/tmp/x" {
					t.Errorf("termination log %q explicit %v", c.TerminationLog, c.TerminationLogExplicit)
				}
			},
		},
		{
			name: "command without --",
			args: []string{"--lock-mode=none", "echo", "hi"},
			check: func(t *testing.T, c *config) {
				if !slices.Equal(c.Command, []string{"echo", "hi"}) || c.URL != nil {
					t.Errorf("command %q url %v", c.Command, c.URL)
				}
			},
		},
		{
			name: "old webhook variable",
			env:  map[string]string{"DATABASE_URL": pgURL, "SLACK_WEB_HOOK_URL": "https://hooks.slack.com/services/T/B/C"},
			check: func(t *testing.T, c *config) {
				if c.SlackWebhookURL == "" {
					t.Errorf("SLACK_WEB_HOOK_URL not read")
				}
			},
		},
		{name: "no database URL", wantErr: "no database URL"},
		{name: "bad duration names the variable", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_TIMEOUT": "soon"}, wantErr: "MIGRUN_LOCK_TIMEOUT: invalid duration"},
		{name: "bad duration flag", args: []string{"--connect-timeout=x"}, env: map[string]string{"DATABASE_URL": pgURL}, wantErr: "connect-timeout"},
		{name: "negative timeout", args: []string{"--lock-timeout=-1s"}, env: map[string]string{"DATABASE_URL": pgURL}, wantErr: "lock timeout must be positive"},
		{name: "unknown flag", args: []string{"--frobnicate"}, env: map[string]string{"DATABASE_URL": pgURL}, wantErr: "flag provided but not defined"},
		{name: "unknown lock mode", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOCK_MODE": "table"}, wantErr: `unknown lock mode "table"`},
		{name: "unknown notify policy", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_NOTIFY": "sometimes"}, wantErr: "sometimes"},
		{name: "unknown log format", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_LOG_FORMAT": "xml"}, wantErr: `unknown log format "xml"`},
		{name: "bad boolean", env: map[string]string{"DATABASE_URL": pgURL, "MIGRUN_RUBY_SYNC": "perhaps"}, wantErr: "MIGRUN_RUBY_SYNC: invalid boolean"},
		{name: "empty command", args: []string{"--", ""}, env: map[string]string{"DATABASE_URL": pgURL}, wantErr: "empty command"},
		{name: "unsupported scheme", env: map[string]string{"DATABASE_URL": "oracle://u:s3cretpw@h/db"}, wantErr: "invalid database URL"},
		{name: "malformed webhook", env: map[string]string{"DATABASE_URL": pgURL, "SLACK_WEBHOOK_URL": "not a url"}, wantErr: "webhook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRun(tt.args, tt.env, io.Discard)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("parseRun() succeeded, want error containing %q", tt.wantErr)
				}
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRun() error = %q, want a usage error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cretpw") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one clean line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRun() error = %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestRawSecrets(t *testing.T) {
	got := rawSecrets(
		[]string{"--database-url", "postgres://u:p%40ss@h/db", "--slack-webhook-url=https://hooks.slack.com/services/X", "--", "x"},
		map[string]string{"DATABASE_URL": "mysql2://root:top secret@h/db", "SLACK_BOT_TOKEN": "xoxb-1"},
	)
	for _, want := range []string{"p%40ss", "p@ss", "top secret", "xoxb-1", "https://hooks.slack.com/services/X"} {
		if !slices.Contains(got, want) {
			t.Errorf("rawSecrets() = %q, missing %q", got, want)
		}
	}
}

// TestHelpShowsNoSecrets: flag defaults come from the environment, so the
// help must show the built-in ones instead.
func TestHelpShowsNoSecrets(t *testing.T) {
	var out strings.Builder
	env := map[string]string{"DATABASE_URL": "postgres://u:HelpSecret1@h/db", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/HelpSecret2"}
	if _, err := parseRun([]string{"--help"}, env, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseRun(--help) = %v", err)
	}
	if !strings.Contains(out.String(), "--lock-timeout") && !strings.Contains(out.String(), "-lock-timeout") {
		t.Errorf("help lacks the flags:\n%s", out.String())
	}
	if strings.Contains(out.String(), "HelpSecret") {
		t.Errorf("help shows a secret:\n%s", out.String())
	}
}

func TestResolveTargets(t *testing.T) {
	const primary = "postgres://u:p@h/app"
	tests := []struct {
		name    string
		env     map[string]string
		want    []string // name=database
		wantErr string
	}{
		{name: "primary only", env: map[string]string{"DATABASE_URL": primary, "MIGRUN_MIGRATIONS_PATHS": "db/migrate, db/more"}, want: []string{"primary=app"}},
		{name: "multi", env: map[string]string{"DATABASE_URL": primary, "ANIMALS_DATABASE_URL": "mysql2://u:p@h/zoo", "MIGRUN_DATABASES": "primary:db/migrate,animals:db/animals_migrate"}, want: []string{"primary=app", "animals=zoo"}},
		{name: "missing URL", env: map[string]string{"DATABASE_URL": primary, "MIGRUN_DATABASES": "animals:db/animals_migrate"}, wantErr: "ANIMALS_DATABASE_URL is not set"},
		{name: "bad entry", env: map[string]string{"DATABASE_URL": primary, "MIGRUN_DATABASES": "animals"}, wantErr: "not name:directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRun([]string{"--skip-if-current"}, tt.env, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tg := range c.Targets {
				got = append(got, tg.name+"="+tg.url.Database)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("targets %v, want %v", got, tt.want)
			}
		})
	}
}
