package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/notify"
)

// defaultCommand is what runs when nothing follows "--".
var defaultCommand = []string{"bundle", "exec", "rails", "db:migrate"}

const defaultTerminationLog = "/dev/termination-log"

// errUsage marks configuration and usage errors: exit 64.
var errUsage = errors.New("usage error")

// config is everything `migrun run` is told, from the environment and flags.
// Each field's env tag names its variable; its flag is named in bindFlags.
type config struct {
	DatabaseURL    string        `env:"MIGRUN_DATABASE_URL"`
	LockName       string        `env:"MIGRUN_LOCK_NAME"`
	LockTimeout    time.Duration `env:"MIGRUN_LOCK_TIMEOUT" envDefault:"30m"`
	ConnectTimeout time.Duration `env:"MIGRUN_CONNECT_TIMEOUT" envDefault:"60s"`
	KeepAlive      time.Duration `env:"MIGRUN_KEEPALIVE_INTERVAL" envDefault:"10s"`
	LockMode       string        `env:"MIGRUN_LOCK_MODE" envDefault:"session"`
	EmptyOutput    string        `env:"MIGRUN_EMPTY_OUTPUT" envDefault:"No DB migration"`
	Environment    string        `env:"MIGRUN_ENVIRONMENT"`
	TerminationLog string        `env:"MIGRUN_TERMINATION_LOG"`
	LogFormat      string        `env:"MIGRUN_LOG_FORMAT" envDefault:"text"`
	LogLevel       string        `env:"MIGRUN_LOG_LEVEL" envDefault:"info"`
	RubySync       bool          `env:"MIGRUN_RUBY_SYNC" envDefault:"true"`

	SkipIfCurrent   bool          `env:"MIGRUN_SKIP_IF_CURRENT"`
	WaitTimeout     time.Duration `env:"MIGRUN_WAIT_TIMEOUT" envDefault:"10m"`
	MigrationsPaths string        `env:"MIGRUN_MIGRATIONS_PATHS" envDefault:"db/migrate"`
	Databases       string        `env:"MIGRUN_DATABASES"`

	SlackWebhookURL string        `env:"SLACK_WEBHOOK_URL"`
	SlackBotToken   string        `env:"SLACK_BOT_TOKEN"`
	SlackChannel    string        `env:"SLACK_CHANNEL"`
	SlackAPIURL     string        `env:"SLACK_API_URL"`
	SlackUsername   string        `env:"SLACK_USERNAME" envDefault:"Rails DB Migration"`
	SlackIconEmoji  string        `env:"SLACK_ICON_EMOJI" envDefault:":rails:"`
	SlackTimeout    time.Duration `env:"MIGRUN_NOTIFY_TIMEOUT" envDefault:"30s"`
	Notify          string        `env:"MIGRUN_NOTIFY" envDefault:"always"`
	App             string        `env:"MIGRUN_APP"`
	Revision        string        `env:"MIGRUN_REVISION"`

	// Derived by parseRun, not read directly.
	Command                []string      `env:"-"`
	TerminationLogExplicit bool          `env:"-"`
	URL                    *dburl.URL    `env:"-"`
	Mode                   lock.Mode     `env:"-"`
	Policy                 notify.Policy `env:"-"`
	Targets                []target      `env:"-"` // the databases the pending check reads
}

// fallbacks are the other names a variable is read under, as Rails and
// older scripts spell them; the first name wins when several are set.
var fallbacks = map[string][]string{
	"MIGRUN_DATABASE_URL": {"DATABASE_URL"},
	"MIGRUN_ENVIRONMENT":  {"RAILS_ENV", "RACK_ENV"},
	"SLACK_WEBHOOK_URL":   {"SLACK_WEB_HOOK_URL"},
}

// parseRun reads the configuration of `migrun run` from environ and args;
// flags win over the environment. It returns errors wrapping errUsage.
func parseRun(args []string, environ map[string]string, usage io.Writer) (*config, error) {
	environ = withFallbacks(environ)
	var c config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return nil, fmt.Errorf("%w: %s", errUsage, envError(err))
	}
	_, c.TerminationLogExplicit = environ["MIGRUN_TERMINATION_LOG"]

	fs := flag.NewFlagSet("migrun run", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by the caller
	fs.Usage = func() {}
	bindFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(usage)
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", errUsage, err)
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "termination-log" {
			c.TerminationLogExplicit = true
		}
	})
	c.Command = fs.Args()
	if len(c.Command) == 0 {
		c.Command = slices.Clone(defaultCommand)
	}
	if err := c.complete(); err != nil {
		return nil, fmt.Errorf("%w: %s", errUsage, err)
	}
	if c.SkipIfCurrent || c.Databases != "" {
		if err := c.resolveTargets(environ); err != nil {
			return nil, fmt.Errorf("%w: %s", errUsage, err)
		}
	}
	return &c, nil
}

// bindFlags makes each setting a flag whose default is what the environment said.
func bindFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "database to lock, Rails URL form (MIGRUN_DATABASE_URL, DATABASE_URL)")
	fs.StringVar(&c.LockName, "lock-name", c.LockName, "what is locked; runners with the same name exclude each other (MIGRUN_LOCK_NAME; default: the database name)")
	fs.DurationVar(&c.LockTimeout, "lock-timeout", c.LockTimeout, "give up waiting for the lock after this long: exit 75 (MIGRUN_LOCK_TIMEOUT)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", c.ConnectTimeout, "keep retrying to reach the database this long: exit 69 (MIGRUN_CONNECT_TIMEOUT)")
	fs.DurationVar(&c.KeepAlive, "keepalive-interval", c.KeepAlive, "how often the held lock's connection is checked (MIGRUN_KEEPALIVE_INTERVAL)")
	fs.StringVar(&c.LockMode, "lock-mode", c.LockMode, "session, transaction (PostgreSQL behind PgBouncer transaction pooling) or none (MIGRUN_LOCK_MODE)")
	fs.StringVar(&c.EmptyOutput, "empty-output", c.EmptyOutput, "result text when the command printed nothing (MIGRUN_EMPTY_OUTPUT)")
	fs.StringVar(&c.Environment, "environment", c.Environment, "environment label in reports (MIGRUN_ENVIRONMENT, RAILS_ENV; default development)")
	fs.StringVar(&c.TerminationLog, "termination-log", c.TerminationLog, "where the summary for Kubernetes goes (MIGRUN_TERMINATION_LOG; default "+defaultTerminationLog+" when it exists)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json (MIGRUN_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (MIGRUN_LOG_LEVEL)")
	fs.BoolVar(&c.RubySync, "ruby-sync", c.RubySync, "make Ruby flush its output at once, so logs are live and in order (MIGRUN_RUBY_SYNC)")
	fs.BoolVar(&c.SkipIfCurrent, "skip-if-current", c.SkipIfCurrent, "run: under the lock, skip the command when no migration is pending (MIGRUN_SKIP_IF_CURRENT)")
	fs.DurationVar(&c.WaitTimeout, "wait-timeout", c.WaitTimeout, "wait: give up waiting for pending migrations after this long: exit 75 (MIGRUN_WAIT_TIMEOUT)")
	fs.StringVar(&c.MigrationsPaths, "migrations-paths", c.MigrationsPaths, "comma-separated migration directories of the primary database (MIGRUN_MIGRATIONS_PATHS)")
	fs.StringVar(&c.Databases, "databases", c.Databases, "multi-database apps: name:dir,... e.g. primary:db/migrate,animals:db/animals_migrate; URLs from <NAME>_DATABASE_URL (MIGRUN_DATABASES)")
	fs.StringVar(&c.SlackWebhookURL, "slack-webhook-url", c.SlackWebhookURL, "Slack incoming webhook (SLACK_WEBHOOK_URL, SLACK_WEB_HOOK_URL)")
	fs.StringVar(&c.SlackBotToken, "slack-bot-token", c.SlackBotToken, "Slack bot token, instead of a webhook (SLACK_BOT_TOKEN)")
	fs.StringVar(&c.SlackChannel, "slack-channel", c.SlackChannel, "Slack channel, e.g. #deploys (SLACK_CHANNEL)")
	fs.StringVar(&c.SlackAPIURL, "slack-api-url", c.SlackAPIURL, "Slack Web API base URL for the bot token, e.g. a proxy (SLACK_API_URL)")
	fs.StringVar(&c.SlackUsername, "slack-username", c.SlackUsername, "Slack user name (SLACK_USERNAME)")
	fs.StringVar(&c.SlackIconEmoji, "slack-icon-emoji", c.SlackIconEmoji, "Slack icon (SLACK_ICON_EMOJI)")
	fs.DurationVar(&c.SlackTimeout, "notify-timeout", c.SlackTimeout, "bound on all attempts to notify (MIGRUN_NOTIFY_TIMEOUT)")
	fs.StringVar(&c.Notify, "notify", c.Notify, "always, changes, failures or never (MIGRUN_NOTIFY)")
	fs.StringVar(&c.App, "app", c.App, "application name shown in reports (MIGRUN_APP)")
	fs.StringVar(&c.Revision, "revision", c.Revision, "revision or image tag shown in reports (MIGRUN_REVISION)")
}

// complete validates the settings and derives the parsed forms.
func (c *config) complete() error {
	var err error
	if c.Policy, err = notify.ParsePolicy(c.Notify); err != nil {
		return err
	}
	if err := c.notifyOptions().Validate(); err != nil {
		return err
	}
	switch lock.Mode(c.LockMode) {
	case lock.ModeSession, lock.ModeTransaction, lock.ModeNone:
		c.Mode = lock.Mode(c.LockMode)
	default:
		return fmt.Errorf("unknown lock mode %q (want session, transaction or none)", c.LockMode)
	}
	for name, d := range map[string]time.Duration{
		"lock timeout": c.LockTimeout, "connect timeout": c.ConnectTimeout,
		"keep-alive interval": c.KeepAlive, "notify timeout": c.SlackTimeout, "wait timeout": c.WaitTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %s", name, d)
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("unknown log format %q (want text or json)", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.Environment == "" {
		c.Environment = "development"
	}
	if !c.TerminationLogExplicit || c.TerminationLog == "" {
		c.TerminationLog = defaultTerminationLog
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("empty command")
	}
	if c.DatabaseURL == "" {
		if c.Mode != lock.ModeNone {
			return errors.New("no database URL: set DATABASE_URL or MIGRUN_DATABASE_URL (or MIGRUN_LOCK_MODE=none to run without a lock)")
		}
		return nil
	}
	if c.URL, err = dburl.Parse(c.DatabaseURL); err != nil {
		return err
	}
	if c.LockName == "" {
		c.LockName = c.URL.Database
	}
	return nil
}

// target is one database of the app and its migration directories.
type target struct {
	name  string
	url   *dburl.URL
	paths []string
}

// resolveTargets reads MIGRUN_DATABASES (or the primary database and
// MIGRUN_MIGRATIONS_PATHS), taking each database's URL as Rails does:
// DATABASE_URL for primary, <NAME>_DATABASE_URL for the others.
func (c *config) resolveTargets(environ map[string]string) error {
	if c.Databases == "" {
		if c.URL == nil {
			return errors.New("no database URL: set DATABASE_URL or MIGRUN_DATABASE_URL")
		}
		c.Targets = []target{{name: "primary", url: c.URL, paths: splitList(c.MigrationsPaths)}}
		return nil
	}
	for _, entry := range splitList(c.Databases) {
		name, dirs, ok := strings.Cut(entry, ":")
		if !ok || name == "" || dirs == "" {
			return fmt.Errorf("MIGRUN_DATABASES entry %q is not name:directory", entry)
		}
		t := target{name: name, paths: strings.Split(dirs, ";")}
		if name == "primary" && c.URL != nil {
			t.url = c.URL
		} else {
			variable := strings.ToUpper(name) + "_DATABASE_URL"
			raw := environ[variable]
			if raw == "" {
				return fmt.Errorf("database %s: %s is not set", name, variable)
			}
			u, err := dburl.Parse(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", variable, err)
			}
			t.url = u
		}
		c.Targets = append(c.Targets, t)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (c *config) notifyOptions() notify.Options {
	return notify.Options{
		WebhookURL: c.SlackWebhookURL,
		BotToken:   c.SlackBotToken,
		Channel:    c.SlackChannel,
		APIURL:     c.SlackAPIURL,
		Username:   c.SlackUsername,
		IconEmoji:  c.SlackIconEmoji,
		Timeout:    c.SlackTimeout,
	}
}

// secrets lists what must never be printed, as far as it is known.
func (c *config) secrets() []string {
	s := []string{c.SlackWebhookURL, c.SlackBotToken}
	if c.URL != nil {
		s = append(s, c.URL.Secrets()...)
	}
	for _, t := range c.Targets {
		s = append(s, t.url.Secrets()...)
	}
	return s
}

func withFallbacks(environ map[string]string) map[string]string {
	out := maps.Clone(environ)
	if out == nil {
		out = map[string]string{}
	}
	for name, others := range fallbacks {
		if out[name] != "" {
			continue
		}
		for _, o := range others {
			if v := environ[o]; v != "" {
				out[name] = v
				break
			}
		}
	}
	return out
}

// envError rewrites caarlos0/env's errors, which name Go fields, in terms
// of the variables the user set.
func envError(err error) string {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err.Error()
	}
	var msgs []string
	t := reflect.TypeFor[config]()
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			name := pe.Name
			if f, ok := t.FieldByName(pe.Name); ok {
				name = strings.Split(f.Tag.Get("env"), ",")[0]
			}
			msgs = append(msgs, fmt.Sprintf("%s: invalid %s: %v", name, kindName(pe.Type), unwrapAll(pe.Err)))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return strings.Join(msgs, "; ")
}

func kindName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return "duration (e.g. 30s, 10m)"
	case reflect.TypeFor[bool]():
		return "boolean (true or false)"
	}
	return t.String()
}

// unwrapAll reaches the innermost cause, which names the bad value only.
func unwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// printUsage shows the flags with their built-in defaults, never the
// environment's values: those may be secrets.
func printUsage(out io.Writer) {
	var defaults config
	_ = env.ParseWithOptions(&defaults, env.Options{Environment: map[string]string{}})
	fs := flag.NewFlagSet("migrun run", flag.ContinueOnError)
	fs.SetOutput(out)
	bindFlags(fs, &defaults)
	fmt.Fprint(out, `Usage:
  migrun run [flags] [-- COMMAND [ARG...]]   lock, run the migration (default: bundle exec rails db:migrate), report
  migrun wait [flags]                       block until the database has every migration in db/migrate (init containers)
  migrun version                            print the version

Every flag can also be set through the environment variable named in its help.

Flags:
`)
	fs.PrintDefaults()
	fmt.Fprint(out, `
Exit status: the command's own; 128+N if it died of signal N; 126 not executable;
127 not found; 64 usage or configuration error; 69 database unreachable;
75 lock not acquired in time (run) or migrations still pending (wait).
`)
}
