package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/pending"
)

// defaultCommand is what `migrun run` runs when nothing follows "--".
var defaultCommand = []string{"bundle", "exec", "rails", "db:migrate"}

// The settings, grouped as subcommands share them. See settings.go for the tags.

type LogSettings struct {
	LogFormat logFormat `env:"MIGRUN_LOG_FORMAT" envDefault:"text" flag:"log-format" help:"log format on stderr: text or json"`
	LogLevel  logLevel  `env:"MIGRUN_LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug, info, warn or error"`
}

type DatabaseSettings struct {
	DatabaseURL    string   `env:"MIGRUN_DATABASE_URL" also:"DATABASE_URL" flag:"database-url" secret:"true" help:"the database, in Rails URL form"`
	ConnectTimeout duration `env:"MIGRUN_CONNECT_TIMEOUT" envDefault:"60s" flag:"connect-timeout" help:"keep trying to reach the database this long, then exit 69"`
	// The database as separate settings, for apps whose database.yml
	// builds the connection from parts: no percent-encoding needed. libpq's
	// variables (which Rails' pg adapter reads too) or MySQL's stand in.
	DBAdapter  string `env:"MIGRUN_DB_ADAPTER" flag:"db-adapter" help:"without a URL: postgresql, mysql2 or trilogy (default: postgresql when PG* variables are set, mysql2 when MYSQL_* ones are)"`
	DBHost     string `env:"MIGRUN_DB_HOST" also:"PGHOST,MYSQL_HOST" flag:"db-host" help:"without a URL: the database host (or socket directory)"`
	DBPort     string `env:"MIGRUN_DB_PORT" also:"PGPORT,MYSQL_TCP_PORT" flag:"db-port" help:"without a URL: the port"`
	DBUser     string `env:"MIGRUN_DB_USER" also:"PGUSER,MYSQL_USER" flag:"db-user" help:"without a URL: the user"`
	DBPassword string `env:"MIGRUN_DB_PASSWORD" also:"PGPASSWORD,MYSQL_PWD,MYSQL_PASSWORD" flag:"db-password" secret:"true" help:"without a URL: the password"`
	DBName     string `env:"MIGRUN_DB_NAME" also:"PGDATABASE,MYSQL_DATABASE" flag:"db-name" help:"without a URL: the database name"`
	DBSSLMode  string `env:"MIGRUN_DB_SSLMODE" also:"PGSSLMODE" flag:"db-sslmode" help:"without a URL: PostgreSQL's sslmode or MySQL's ssl_mode"`
}

type EnvironmentSettings struct {
	Environment string `env:"MIGRUN_ENVIRONMENT" also:"RAILS_ENV,RACK_ENV" envDefault:"development" flag:"environment" help:"the Rails environment, also the label in reports"`
}

type LockSettings struct {
	LockName          string     `env:"MIGRUN_LOCK_NAME" flag:"lock-name" help:"what is locked; runners with the same name exclude each other (default: the database name)"`
	LockTimeout       duration   `env:"MIGRUN_LOCK_TIMEOUT" envDefault:"30m" flag:"lock-timeout" help:"give up waiting for the lock after this long: exit 75"`
	LockMode          lockMode   `env:"MIGRUN_LOCK_MODE" envDefault:"session" flag:"lock-mode" help:"session, transaction (PostgreSQL behind PgBouncer transaction pooling) or none"`
	KeepAlive         duration   `env:"MIGRUN_KEEPALIVE_INTERVAL" envDefault:"5s" flag:"keepalive-interval" help:"how often the held lock is confirmed with the database"`
	DeadHolderTimeout duration   `env:"MIGRUN_DEAD_HOLDER_TIMEOUT" envDefault:"30s" flag:"dead-holder-timeout" help:"a runner that vanishes (node lost, network cut) holds the lock at most about this long"`
	StopTimeout       duration   `env:"MIGRUN_STOP_TIMEOUT" envDefault:"10s" flag:"stop-timeout" help:"when migrun stops the command (lock lost), SIGKILL this long after SIGTERM"`
	OnLockLost        onLockLost `env:"MIGRUN_ON_LOCK_LOST" envDefault:"stop" flag:"on-lock-lost" help:"stop the command when the lock is lost (stop) or let it finish (continue)"`
}

type GateSettings struct {
	MigrationsPaths  string   `env:"MIGRUN_MIGRATIONS_PATHS" flag:"migrations-paths" help:"comma-separated migration directories of the primary database (default: what the app's configuration shows, db/migrate)"`
	Databases        string   `env:"MIGRUN_DATABASES" flag:"databases" help:"multi-database apps: name:dir;dir,... e.g. primary:db/migrate,animals:db/animals_migrate"`
	Manifest         string   `env:"MIGRUN_MANIFEST" flag:"manifest" help:"Rails' own view of the migrations, written by migrun manifest at image build (default: db/migrun-manifest.json when it exists)"`
	TablePrefix      string   `env:"MIGRUN_TABLE_NAME_PREFIX" flag:"table-name-prefix" help:"the app's config.active_record.table_name_prefix"`
	TableName        string   `env:"MIGRUN_SCHEMA_MIGRATIONS_TABLE_NAME" flag:"schema-migrations-table-name" help:"the app's config.active_record.schema_migrations_table_name"`
	TableSuffix      string   `env:"MIGRUN_TABLE_NAME_SUFFIX" flag:"table-name-suffix" help:"the app's config.active_record.table_name_suffix"`
	ProgressInterval duration `env:"MIGRUN_PROGRESS_INTERVAL" envDefault:"30s" flag:"progress-interval" help:"how often a line says what is still being waited for"`
}

type ReportSettings struct {
	TerminationLog string `env:"MIGRUN_TERMINATION_LOG" envDefault:"/dev/termination-log" flag:"termination-log" help:"where the summary for Kubernetes goes (the default path only when it exists)"`
	EmptyOutput    string `env:"MIGRUN_EMPTY_OUTPUT" envDefault:"No DB migration" flag:"empty-output" help:"the result text when the command printed nothing"`
	App            string `env:"MIGRUN_APP" flag:"app" help:"application name shown in reports"`
	Revision       string `env:"MIGRUN_REVISION" flag:"revision" help:"revision or image tag shown in reports"`
}

// runConfig is `migrun run`'s configuration.
type runConfig struct {
	LogSettings
	DatabaseSettings
	EnvironmentSettings
	LockSettings
	GateSettings
	ReportSettings
	NotifySettings
	SkipIfCurrent  boolean  `env:"MIGRUN_SKIP_IF_CURRENT" flag:"skip-if-current" help:"check for pending migrations first and do not run the command when none is"`
	RubySync       boolean  `env:"MIGRUN_RUBY_SYNC" envDefault:"true" flag:"ruby-sync" help:"make Ruby write its output at once, so logs are live and in order"`
	DDLLockTimeout duration `env:"MIGRUN_DDL_LOCK_TIMEOUT" envDefault:"0s" flag:"ddl-lock-timeout" help:"each statement of the command waits at most this long for a table lock (PostgreSQL lock_timeout, MySQL lock_wait_timeout); 0: no limit"`
	Retries        count    `env:"MIGRUN_RETRIES" envDefault:"3" flag:"retries" help:"with a DDL lock timeout: run the command again this many times at most after it failed on that timeout, when a rerun is safe"`
	// SeparateStderr trades the capture's exact order for live streams
	// kept apart (see runner.Options.SeparateStderr).
	SeparateStderr boolean `env:"MIGRUN_SEPARATE_STDERR" flag:"separate-stderr" help:"copy the command's stderr to migrun's stderr (default: both streams to stdout, captured in the exact order written)"`

	// Derived by parseRun.
	command           []string
	url               *dburl.URL              // nil with lock mode none and no database
	databases         []pending.DatabasePaths // as set; nil: the app's own configuration
	terminationLogSet bool                    // the termination log path was given, so it is created
	parsed            *parsed
}

// waitConfig is `migrun wait`'s configuration.
type waitConfig struct {
	LogSettings
	DatabaseSettings
	EnvironmentSettings
	GateSettings
	WaitTimeout duration `env:"MIGRUN_WAIT_TIMEOUT" envDefault:"10m" flag:"wait-timeout" help:"give up waiting for pending migrations after this long: exit 75"`

	url       *dburl.URL
	databases []pending.DatabasePaths
	parsed    *parsed
}

// parseRun reads `migrun run`'s configuration from environ and args (flags
// win). A bad value is an error naming the variable or flag; the
// configuration is returned even then, as far as it was read, so that the
// error can still be reported to Slack.
func parseRun(args []string, environ map[string]string, usage io.Writer) (*runConfig, error) {
	c := &runConfig{}
	p, err := parseSettings(c, "migrun run", args, environ, usage, func(w io.Writer) { printHelp(w, "run") })
	if err != nil {
		return c, err
	}
	return c, c.resolve(p, environ)
}

// resolve checks the settings parseSettings read into c and derives the
// rest, as `migrun run` uses them (`migrun status` reports on them).
func (c *runConfig) resolve(p *parsed, environ map[string]string) error {
	var err error
	c.parsed = p
	c.command = p.args
	if len(c.command) == 0 {
		c.command = slices.Clone(defaultCommand)
	}
	if c.command[0] == "" {
		return errors.New("the command is empty (after --)")
	}
	c.terminationLogSet = p.given(&c.TerminationLog)
	if err := c.checkDurations(p, &c.LockTimeout, &c.KeepAlive, &c.DeadHolderTimeout, &c.StopTimeout, &c.NotifyTimeout, &c.ProgressInterval); err != nil {
		return err
	}
	if err := c.NotifySettings.validate(p); err != nil {
		return err
	}
	if c.LockMode != "none" {
		if _, err := lock.TimingFor(c.lockOptions("", nil)); err != nil {
			var te *lock.TimingError
			if errors.As(err, &te) {
				return p.invalid(&c.DeadHolderTimeout, "too short for MIGRUN_KEEPALIVE_INTERVAL=%s and MIGRUN_STOP_TIMEOUT=%s: make it at least %s, or shorten those",
					time.Duration(c.KeepAlive), time.Duration(c.StopTimeout), te.Min)
			}
			return err
		}
	}
	if c.url, err = parseDatabase(p, &c.DatabaseSettings, c.LockMode != "none" || bool(c.SkipIfCurrent)); err != nil {
		return err
	}
	if c.LockName == "" && c.url != nil {
		c.LockName = c.url.Database
	}
	if c.LockMode != "none" && c.url != nil {
		// The lock as run makes it (lock.New connects to nothing), so that
		// run and status refuse the same settings, before anything starts.
		if _, err := lock.New(c.url, c.lockOptions("", nil)); err != nil {
			return p.invalid(&c.LockMode, "%s", strings.TrimPrefix(err.Error(), lock.ErrUnsupported.Error()+": "))
		}
	}
	if c.SkipIfCurrent {
		if c.databases, err = explicitDatabases(p, &c.GateSettings, c.url, environ); err != nil {
			return err
		}
	}
	return nil
}

// stopMargin is how much sooner than the lock's deadline the command is
// told to stop, beyond its own stop timeout: time for SIGKILL to land.
const stopMargin = time.Second

// lockOptions are the lock's options from the settings.
func (c *runConfig) lockOptions(identity string, log *slog.Logger) lock.Options {
	return lock.Options{
		Name:              c.LockName,
		Mode:              lock.Mode(c.LockMode),
		ConnectTimeout:    time.Duration(c.ConnectTimeout),
		KeepAlive:         time.Duration(c.KeepAlive),
		DeadHolderTimeout: time.Duration(c.DeadHolderTimeout),
		StopLead:          time.Duration(c.StopTimeout) + stopMargin,
		Identity:          identity,
		Logger:            log,
		ProgressInterval:  time.Duration(c.ProgressInterval),
		CommandIdentity:   commandIdentity,
	}
}

// commandIdentity is the name the command's own sessions get (PGAPPNAME,
// see run.commandEnv) in the run whose lock sessions are named identity,
// "migrun <host> <pid>": "migrun command <host> <pid>", so that a waiter
// finds what the holder's migration is doing. "" for other names.
func commandIdentity(identity string) string {
	rest, ok := strings.CutPrefix(identity, "migrun ")
	if !ok || rest == "" {
		return ""
	}
	return truncateName("migrun command " + rest)
}

// truncateName bounds a session name to 63 bytes, PostgreSQL's limit for
// application_name, without splitting a character.
func truncateName(s string) string {
	for len(s) > 63 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// lockElsewhere says, when the lock's database was given apart from the
// command's (MIGRUN_DATABASE_URL or --database-url), whether the command's
// DATABASE_URL names another database: then this lock excludes nobody who
// migrates that one.
func (c *runConfig) lockElsewhere(environ map[string]string) string {
	src := c.parsed.lookup(&c.DatabaseURL).source
	if c.url == nil || src == "" || src == "DATABASE_URL" {
		return ""
	}
	raw := environ["DATABASE_URL"]
	if raw == "" {
		return ""
	}
	cmd, err := dburl.Parse(raw)
	if err != nil {
		return fmt.Sprintf("the lock is on %s (%s), and the command's DATABASE_URL does not parse (%v)", c.url.Redacted(), src, err)
	}
	if cmd.IsMySQL() == c.url.IsMySQL() && cmd.Address("localhost") == c.url.Address("localhost") && cmd.Database == c.url.Database {
		return ""
	}
	return fmt.Sprintf("the lock is on %s (%s) but the command's DATABASE_URL names %s: runners migrating that database are not excluded by this lock", c.url.Redacted(), src, cmd.Redacted())
}

// parseWait reads `migrun wait`'s configuration.
func parseWait(args []string, environ map[string]string, usage io.Writer) (*waitConfig, error) {
	c := &waitConfig{}
	p, err := parseSettings(c, "migrun wait", args, environ, usage, func(w io.Writer) { printHelp(w, "wait") })
	if err != nil {
		return c, err
	}
	if len(p.args) > 0 {
		return c, fmt.Errorf("migrun wait takes no command, got %q (see migrun wait --help)", p.args[0])
	}
	c.parsed = p
	if err := c.checkDurations(p, &c.WaitTimeout, &c.ProgressInterval); err != nil {
		return c, err
	}
	if c.url, err = parseDatabase(p, &c.DatabaseSettings, c.Databases == ""); err != nil {
		return c, err
	}
	c.databases, err = explicitDatabases(p, &c.GateSettings, c.url, environ)
	return c, err
}

// checkDurations refuses zero for durations that bound a wait, and a
// connect timeout of zero everywhere.
func (d *DatabaseSettings) checkDurations(p *parsed, others ...*duration) error {
	for _, v := range append([]*duration{&d.ConnectTimeout}, others...) {
		if *v <= 0 {
			return p.invalid(v, "must be positive")
		}
	}
	return nil
}

// parseDatabase reads the database: its URL, or else its parts;
// required says whether one must be given.
func parseDatabase(p *parsed, d *DatabaseSettings, required bool) (*dburl.URL, error) {
	if d.DatabaseURL != "" {
		u, err := dburl.Parse(d.DatabaseURL)
		if err != nil {
			return nil, p.invalid(&d.DatabaseURL, "%w", err)
		}
		return u, nil
	}
	parts := []*string{&d.DBHost, &d.DBPort, &d.DBUser, &d.DBPassword, &d.DBName, &d.DBSSLMode}
	if !slices.ContainsFunc(parts, func(v *string) bool { return *v != "" }) {
		if required {
			return nil, errors.New("no database: set DATABASE_URL (or MIGRUN_DATABASE_URL, --database-url), or its parts (PGHOST, PGDATABASE, ... or MIGRUN_DB_HOST, MIGRUN_DB_NAME, ...); MIGRUN_LOCK_MODE=none runs without a lock")
		}
		return nil, nil
	}
	adapter := dburl.Adapter(strings.ToLower(d.DBAdapter))
	if adapter == "" {
		// The family of the variables that were read says which server.
		for _, v := range parts {
			family := ""
			switch src := p.lookup(v).source; {
			case strings.HasPrefix(src, "PG"):
				family = string(dburl.PostgreSQL)
			case strings.HasPrefix(src, "MYSQL_"):
				family = string(dburl.MySQL2)
			default:
				continue
			}
			if adapter != "" && string(adapter) != family {
				return nil, p.invalid(v, "both PG* and MYSQL_* variables are set: say which server with MIGRUN_DB_ADAPTER")
			}
			adapter = dburl.Adapter(family)
		}
		if adapter == "" {
			return nil, p.invalid(&d.DBAdapter, "the database is given in parts: say which server (postgresql, mysql2 or trilogy)")
		}
	}
	sslKey := "sslmode"
	if adapter != dburl.PostgreSQL {
		sslKey = "ssl_mode"
	}
	u, err := dburl.FromParts(dburl.Parts{Adapter: adapter, Host: d.DBHost, Port: d.DBPort, User: d.DBUser,
		Password: d.DBPassword, DB: d.DBName, Params: map[string]string{sslKey: d.DBSSLMode}})
	if err != nil {
		return nil, fmt.Errorf("the database's parts: %w", err)
	}
	return u, nil
}

// explicitDatabases is what MIGRUN_DATABASES or MIGRUN_MIGRATIONS_PATHS
// say, or nil when neither is set (the gate then reads the app's own
// configuration). The URL of each database MIGRUN_DATABASES names must be
// there and parse.
func explicitDatabases(p *parsed, g *GateSettings, primary *dburl.URL, environ map[string]string) ([]pending.DatabasePaths, error) {
	if g.Databases == "" {
		if paths := splitList(g.MigrationsPaths); len(paths) > 0 {
			return []pending.DatabasePaths{{Name: "primary", Paths: paths}}, nil
		}
		return nil, nil
	}
	var dbs []pending.DatabasePaths
	for _, entry := range splitList(g.Databases) {
		name, dirs, ok := strings.Cut(entry, ":")
		if !ok || name == "" || dirs == "" {
			return nil, p.invalid(&g.Databases, "entry %q is not name:directory", entry)
		}
		if _, err := databaseURL(name, primary, environ); err != nil {
			return nil, err
		}
		dbs = append(dbs, pending.DatabasePaths{Name: name, Paths: strings.Split(dirs, ";")})
	}
	return dbs, nil
}

// databaseURL is a database's URL by its database.yml name, as Rails takes
// it: migrun's database for primary, <NAME>_DATABASE_URL for the others.
func databaseURL(name string, primary *dburl.URL, environ map[string]string) (*dburl.URL, error) {
	if name == "primary" {
		if primary == nil {
			return nil, errors.New("database primary: no database URL (set DATABASE_URL)")
		}
		return primary, nil
	}
	variable := strings.ToUpper(name) + "_DATABASE_URL"
	raw := environ[variable]
	if raw == "" {
		return nil, fmt.Errorf("database %s: %s is not set", name, variable)
	}
	u, err := dburl.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	return u, nil
}

// gateConfig is what the gate is told: the app in the working directory,
// the databases and table name as set, each database's URL as Rails takes it.
func (g *GateSettings) gateConfig(p *parsed, environment string, primary *dburl.URL, explicit []pending.DatabasePaths, connectTimeout time.Duration, environ map[string]string, log *slog.Logger) pending.Config {
	return pending.Config{
		Environment: environment,
		Manifest:    g.Manifest,
		Databases:   explicit,
		Table: pending.TableName{
			Prefix: g.TablePrefix, PrefixSet: p.given(&g.TablePrefix),
			Name: g.TableName, NameSet: p.given(&g.TableName),
			Suffix: g.TableSuffix, SuffixSet: p.given(&g.TableSuffix),
		},
		URLFor:         func(name string) (*dburl.URL, error) { return databaseURL(name, primary, environ) },
		ConnectTimeout: connectTimeout,
		Logger:         log,
	}
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

// scrubberFor knows what must never be printed: the values of the secret
// settings of cfg, as parsed and as given (variables, flags), however far
// parsing got, and the passwords of every database URL in the environment.
func scrubberFor(cfg any, args []string, environ map[string]string) *redact.Scrubber {
	var raw []string
	for _, s := range settingsOf(cfg) {
		if !s.Secret {
			continue
		}
		raw = append(raw, s.text())
		for _, name := range append([]string{s.Env}, s.Also...) {
			raw = append(raw, environ[name])
		}
		raw = append(raw, flagValues(args, s.Flag)...)
	}
	for k, v := range environ {
		if strings.HasSuffix(k, "DATABASE_URL") {
			raw = append(raw, v)
		}
	}
	var secrets []string
	for _, v := range raw {
		if v = strings.TrimSpace(v); v != "" {
			secrets = append(secrets, v)
			secrets = append(secrets, dburl.SecretsOf(v)...)
		}
	}
	return redact.New(secrets...)
}

// flagValues finds the values given to --name in args, before "--".
func flagValues(args []string, name string) []string {
	if name == "" {
		return nil
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		flagName, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || flagName != name {
			continue
		}
		if hasValue {
			out = append(out, value)
		} else if i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

// withoutSecrets is environ without the private settings, the secrets only
// migrun needs (the Slack webhook URL and bot token): the command gets the
// rest, its database's URL and password included.
func withoutSecrets(environ map[string]string, settings []*setting) map[string]string {
	out := make(map[string]string, len(environ))
	for k, v := range environ {
		out[k] = v
	}
	for _, s := range settings {
		if s.Private {
			delete(out, s.Env)
			for _, other := range s.Also {
				delete(out, other)
			}
		}
	}
	return out
}

// envList is environ as exec wants it, sorted.
func envList(environ map[string]string) []string {
	out := make([]string, 0, len(environ))
	for k, v := range environ {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// newLogger logs to w in the format and at the level asked, every line
// through the secret scrubber. Durations are seconds (a number, to the
// millisecond) in both formats, so log pipelines read one unit.
func newLogger(l *LogSettings, w io.Writer, scrub *redact.Scrubber) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.LogLevel.level(), ReplaceAttr: logValues}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if l.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(scrub.Handler(h))
}

// logValues writes durations in seconds, and a line's time in UTC, as
// Kubernetes' own logs and the Slack message's time: the same instant reads
// the same everywhere, and the first line needs no time zone file read
// (time.Local loads /etc/localtime on first use, on the way to the
// command's start).
func logValues(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 && a.Value.Kind() == slog.KindTime {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
		return a
	}
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(math.Round(a.Value.Duration().Seconds()*1000) / 1000)
	}
	return a
}
