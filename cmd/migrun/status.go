package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/pending"
	"github.com/migrun/migrun/report"
)

// statusBound bounds each look status takes (the database, the gate,
// a test message) when the connect timeout is longer: status is for a
// person waiting at a terminal.
const statusBound = 10 * time.Second

// statusConfig is `migrun status`'s configuration: run's settings, read
// and checked as run reads them (so status sees what a Job with the same
// environment sees), and its own.
type statusConfig struct {
	RunConfig
	Format     statusFormat `env:"MIGRUN_STATUS_FORMAT" envDefault:"text" flag:"format" help:"text for people, json for scripts"`
	NotifyTest boolean      `env:"MIGRUN_STATUS_NOTIFY_TEST" flag:"notify-test" help:"post a test message to Slack and the result webhook, whatever MIGRUN_NOTIFY says"`
}

type statusFormat keyword

func (f *statusFormat) UnmarshalText(text []byte) error {
	k, err := oneOf(text, "text", "json")
	*f = statusFormat(k)
	return err
}

// parseStatus reads `migrun status`'s configuration.
func parseStatus(args []string, environ map[string]string, usage io.Writer) (*statusConfig, error) {
	c := &statusConfig{}
	p, err := parseSettings(c, "migrun status", args, environ, usage, func(w io.Writer) { printHelp(w, "status") })
	if err != nil {
		return c, err
	}
	if len(p.args) > 0 {
		return c, fmt.Errorf("migrun status takes no command, got %q (see migrun status --help)", p.args[0])
	}
	return c, c.resolve(p, environ)
}

// RunConfig is runConfig under an exported name, so that the settings
// parser fills it embedded in statusConfig.
type RunConfig = runConfig

// statusDoc is what `migrun status` found; --format json writes it as is.
type statusDoc struct {
	OK            bool             `json:"ok"`
	ExitStatus    int              `json:"exit_status"`
	Problems      []string         `json:"problems"` // what is wrong, one line each; empty when all is well
	Database      *statusDatabase  `json:"database,omitempty"`
	Lock          *statusLock      `json:"lock,omitempty"`
	Migrations    *statusPending   `json:"migrations,omitempty"`
	Notifications *statusNotify    `json:"notifications,omitempty"`
	Settings      []statusSetting  `json:"settings,omitempty"`
	outcome       report.Outcome   // decides ExitStatus
	scrub         *redact.Scrubber // every string goes through it
}

type statusSetting struct {
	Variable string `json:"variable"`
	Flag     string `json:"flag,omitempty"`
	Value    string `json:"value"` // scrubbed; redact.Mask for a secret that is set
	// Source is flag, variable, default, derived (from other settings,
	// e.g. the lock name from the database's) or unset; From names the
	// flag or variable.
	Source string `json:"source"`
	From   string `json:"from,omitempty"`
	Secret bool   `json:"secret,omitempty"`
}

type statusDatabase struct {
	URL           string `json:"url"` // without its password
	Adapter       string `json:"adapter"`
	Reachable     bool   `json:"reachable"`
	ServerVersion string `json:"server_version,omitempty"`
	Error         string `json:"error,omitempty"`
}

type statusLock struct {
	Mode   string `json:"mode"`
	Name   string `json:"name,omitempty"`
	Lock   string `json:"lock,omitempty"`   // e.g. postgresql advisory lock (…) "app" on host:5432/app
	State  string `json:"state"`            // free, held, unknown or none
	Holder string `json:"holder,omitempty"` // who holds it, as far as the account can see
	Error  string `json:"error,omitempty"`
}

type statusPending struct {
	Checked bool             `json:"checked"`
	Current bool             `json:"current"`
	Pending []statusMigrated `json:"pending"`
	Unsure  []string         `json:"unsure,omitempty"` // why migrun cannot tell what Rails would do
	Error   string           `json:"error,omitempty"`
}

type statusMigrated struct {
	Database string `json:"database"`
	Version  string `json:"version"`
	Name     string `json:"name"`
	Path     string `json:"path,omitempty"`
}

type statusNotify struct {
	Slack    bool   `json:"slack"`               // Slack is configured
	SlackVia string `json:"slack_via,omitempty"` // webhook or bot token
	Webhook  bool   `json:"webhook"`             // the generic result webhook is configured
	Policy   string `json:"policy"`
	// Test is the --notify-test message's fate per receiver: "sent" or
	// "failed: why"; absent without --notify-test.
	Test map[string]string `json:"test,omitempty"`
}

// statusMain is `migrun status`: a one-shot report, for a person
// debugging a deploy with the Job's environment, of the configuration
// and where each value came from, the database, the lock (never taken),
// the pending migrations as wait's gate sees them and the notifications.
func statusMain(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	cfg, err := parseStatus(args, environ, stdout)
	if errors.Is(err, errHelp) {
		return 0
	}
	scrub := scrubberFor(cfg, args, environ)
	if err != nil {
		msg := scrub.String(err.Error())
		fmt.Fprintf(stderr, "migrun: %s\n", msg)
		doc := &statusDoc{outcome: report.ConfigError, scrub: scrub, Problems: []string{msg}}
		doc.settle()
		if cfg.Format == "json" {
			doc.writeJSON(stdout)
		}
		return doc.ExitStatus
	}
	log := newLogger(&cfg.LogSettings, stderr, scrub)
	doc := lookAround(ctx, cfg, environ, log, scrub)
	if cfg.Format == "json" {
		doc.writeJSON(stdout)
	} else {
		doc.writeText(stdout)
	}
	return doc.ExitStatus
}

// lookAround makes every check of status.
func lookAround(ctx context.Context, cfg *statusConfig, environ map[string]string, log *slog.Logger, scrub *redact.Scrubber) *statusDoc {
	doc := &statusDoc{scrub: scrub, Settings: settingsReport(cfg.parsed, scrub)}
	bound := min(time.Duration(cfg.ConnectTimeout), statusBound)
	host := hostname(environ)
	reachable := doc.inspect(ctx, cfg, host, bound, log)
	doc.checkPending(ctx, cfg, environ, reachable, bound, log)
	doc.checkNotify(ctx, cfg, environ, host, bound, log)
	doc.outcome = report.Healthy
	if len(doc.Problems) > 0 {
		doc.outcome = report.Unhealthy
	}
	doc.settle()
	return doc
}

// problem records what is wrong.
func (d *statusDoc) problem(format string, args ...any) {
	d.Problems = append(d.Problems, d.scrub.String(fmt.Sprintf(format, args...)))
}

// settle decides the exit status, in the one table.
func (d *statusDoc) settle() {
	res := report.Result{Outcome: d.outcome}
	d.ExitStatus = res.ExitStatus()
	d.OK = d.ExitStatus == 0
	if d.Problems == nil {
		d.Problems = []string{}
	}
}

// settingsReport is every setting's effective value, scrubbed, and where it
// came from; secrets say only that they are set.
func settingsReport(p *parsed, scrub *redact.Scrubber) []statusSetting {
	var out []statusSetting
	for _, s := range p.settings {
		v := s.text()
		r := statusSetting{Variable: s.Env, Flag: s.Flag, Value: scrub.String(v), Secret: s.Secret}
		switch {
		case strings.HasPrefix(s.source, "--"):
			r.Source, r.From = "flag", s.source
		case s.source != "":
			r.Source, r.From = "variable", s.source
		case s.Def != "" || (s.value.IsZero() && v != ""): // a default, or the zero of its kind (false, 0s)
			r.Source = "default"
		case !s.value.IsZero():
			r.Source = "derived"
		default:
			r.Source = "unset"
		}
		if s.Secret && v != "" {
			r.Value = redact.Mask
		}
		out = append(out, r)
	}
	return out
}

// inspect looks at the lock's database and the lock, never taking it;
// it reports whether the database answered.
func (d *statusDoc) inspect(ctx context.Context, cfg *statusConfig, host string, bound time.Duration, log *slog.Logger) bool {
	d.Lock = &statusLock{Mode: string(cfg.LockMode), Name: cfg.LockName, State: "none"}
	u := cfg.url
	if u == nil {
		return false
	}
	d.Database = &statusDatabase{URL: d.scrub.String(u.Redacted()), Adapter: string(u.Adapter)}
	opts := cfg.lockOptions(truncateName(fmt.Sprintf("migrun status %s %d", host, os.Getpid())), log)
	if cfg.LockMode != "none" {
		if l, err := lock.New(u, opts); err == nil {
			d.Lock.Lock = d.scrub.String(l.String())
		}
		d.Lock.State = "unknown"
	}
	if u.Adapter == dburl.SQLite3 {
		d.Database.Error = "a sqlite3 file: nothing to connect to"
		if cfg.LockMode != "none" {
			d.Lock.Error = "a lock file: status does not look at it"
		}
		return true
	}
	ictx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	got, err := lock.Inspect(ictx, u, opts)
	switch {
	case errors.Is(err, lock.ErrUnavailable) || (err != nil && got.Server == ""):
		d.Database.Error = d.scrub.String(err.Error())
		d.problem("database unreachable (looked for %s): %s", bound, strings.TrimPrefix(err.Error(), lock.ErrUnavailable.Error()+": "))
		return false
	case err != nil:
		d.Database.Reachable, d.Database.ServerVersion = true, got.Server
		d.Lock.Error = d.scrub.String(err.Error())
		d.problem("cannot look at the lock: %s", err)
		return true
	}
	d.Database.Reachable, d.Database.ServerVersion = true, got.Server
	if cfg.LockMode == "none" {
		return true
	}
	d.Lock.State = "free"
	if got.Held {
		d.Lock.State, d.Lock.Holder = "held", d.scrub.String(got.Holder)
	}
	return true
}

// checkPending asks wait's gate, built as wait builds it, once.
func (d *statusDoc) checkPending(ctx context.Context, cfg *statusConfig, environ map[string]string, reachable bool, bound time.Duration, log *slog.Logger) {
	d.Migrations = &statusPending{Pending: []statusMigrated{}}
	if cfg.url != nil && cfg.url.Adapter != dburl.SQLite3 && !reachable {
		d.Migrations.Error = "not checked: the database is unreachable"
		return
	}
	dbs, err := explicitDatabases(cfg.parsed, &cfg.GateSettings, cfg.url, environ)
	if err != nil {
		d.Migrations.Error = d.scrub.String(err.Error())
		d.problem("cannot check migrations: %s", err)
		return
	}
	gate, err := pending.Open(cfg.gateConfig(cfg.parsed, cfg.Environment, cfg.url, dbs, bound, environ, log))
	if err != nil {
		d.Migrations.Error = d.scrub.String(err.Error())
		d.problem("cannot check migrations: %s", err)
		return
	}
	defer gate.Close()
	gctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	v, err := gate.Check(gctx)
	if err != nil {
		d.Migrations.Error = d.scrub.String(err.Error())
		d.problem("cannot read applied migrations: %s", err)
		return
	}
	d.Migrations.Checked, d.Migrations.Current = true, v.Current()
	for _, m := range v.Pending {
		d.Migrations.Pending = append(d.Migrations.Pending, statusMigrated{Database: m.Database, Version: m.Version, Name: m.Name, Path: m.Path})
	}
	for _, why := range v.Unsure {
		d.Migrations.Unsure = append(d.Migrations.Unsure, d.scrub.String(why))
	}
	switch {
	case len(v.Unsure) > 0:
		d.problem("migrun cannot tell whether Rails would migrate (wait would keep waiting): %s", strings.Join(v.Unsure, "; "))
	case len(v.Pending) > 0:
		d.problem("%d migrations pending: %s", len(v.Pending), describePending(v.Pending))
	}
}

// checkNotify says what is configured and, with --notify-test, posts a
// test message through run's notifier, whatever the policy.
func (d *statusDoc) checkNotify(ctx context.Context, cfg *statusConfig, environ map[string]string, host string, bound time.Duration, log *slog.Logger) {
	s := &cfg.NotifySettings
	d.Notifications = &statusNotify{Policy: string(s.Notify)}
	if o := s.slackOptions(nil); o.Enabled() {
		d.Notifications.Slack, d.Notifications.SlackVia = true, "webhook"
		if s.SlackWebhookURL == "" {
			d.Notifications.SlackVia = "bot token"
		}
	}
	d.Notifications.Webhook = s.webhookOptions(nil).Enabled()
	if !cfg.NotifyTest {
		return
	}
	d.Notifications.Test = map[string]string{}
	n := newNotifier(s, log)
	if n.slack == nil && n.hook == nil {
		d.problem("--notify-test: no notification is configured (SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN or MIGRUN_WEBHOOK_URL)")
		return
	}
	res := report.Result{
		Outcome:     report.NotifyTest,
		ExitCode:    -1,
		Environment: cfg.Environment,
		Host:        host,
		App:         cfg.App,
		Revision:    cfg.Revision,
		Namespace:   environ["POD_NAMESPACE"],
		Started:     time.Now(),
		Output:      "A test message from migrun status --notify-test on " + host + ": nothing was migrated.",
	}
	res.Link = report.LinkTemplate(cfg.LinkTemplate).Expand(res)
	tctx, cancel := context.WithTimeout(ctx, max(bound, time.Duration(s.NotifyTimeout)))
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	record := func(receiver string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			d.Notifications.Test[receiver] = d.scrub.String("failed: " + err.Error())
			d.problem("--notify-test: %s: %s", receiver, err)
			return
		}
		d.Notifications.Test[receiver] = "sent"
	}
	if n.slack != nil {
		wg.Go(func() { record("slack", n.slack.Notify(tctx, res)) })
	}
	if n.hook != nil {
		wg.Go(func() { record("webhook", n.hook.Send(tctx, res)) })
	}
	wg.Wait()
}

func (d *statusDoc) writeJSON(w io.Writer) {
	b, err := encodeJSON(d)
	if err != nil {
		fmt.Fprintf(w, "{\"ok\": false, \"problems\": [%q]}\n", d.scrub.String(err.Error()))
		return
	}
	// Every value was scrubbed on its way in; this is the last guard. It
	// sees secrets as written, since nothing is HTML-escaped (a secret
	// with <, > or & would otherwise slip through as \u003c...). Should
	// masking have broken the document (a secret that is also JSON
	// syntax), every string in it is scrubbed one by one instead.
	out := d.scrub.String(string(b))
	if !json.Valid([]byte(out)) {
		var v any
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			fmt.Fprintf(w, "{\"ok\": false, \"problems\": [%q]}\n", "cannot write the status document")
			return
		}
		if b, err = encodeJSON(scrubJSON(v, d.scrub)); err != nil {
			fmt.Fprintf(w, "{\"ok\": false, \"problems\": [%q]}\n", "cannot write the status document")
			return
		}
		out = string(b)
	}
	_, _ = io.WriteString(w, out)
}

// encodeJSON writes v indented, without HTML escaping, ending in a newline.
func encodeJSON(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// scrubJSON scrubs every string (and key) of a decoded JSON value.
func scrubJSON(v any, scrub *redact.Scrubber) any {
	switch v := v.(type) {
	case string:
		return scrub.String(v)
	case []any:
		for i := range v {
			v[i] = scrubJSON(v[i], scrub)
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[scrub.String(k)] = scrubJSON(e, scrub)
		}
		return out
	}
	return v
}

func (d *statusDoc) writeText(w io.Writer) {
	var b strings.Builder
	res := report.Result{Outcome: d.outcome}
	fmt.Fprintf(&b, "migrun status: %s (exit %d)\n", res.Describe(), d.ExitStatus)
	for _, p := range d.Problems {
		fmt.Fprintf(&b, "  - %s\n", p)
	}
	b.WriteString("\nDatabase\n")
	if db := d.Database; db == nil {
		b.WriteString("  none configured\n")
	} else {
		fmt.Fprintf(&b, "  %s\n", db.URL)
		switch {
		case db.Reachable && db.ServerVersion != "":
			fmt.Fprintf(&b, "  reachable, server version %s\n", db.ServerVersion)
		case db.Error != "":
			fmt.Fprintf(&b, "  %s\n", db.Error)
		}
	}
	if l := d.Lock; l != nil {
		b.WriteString("\nLock\n")
		switch l.State {
		case "none":
			b.WriteString("  none (MIGRUN_LOCK_MODE=none)\n")
		case "held":
			fmt.Fprintf(&b, "  %s\n  held by %s\n", l.Lock, l.Holder)
		default:
			fmt.Fprintf(&b, "  %s\n  %s", l.Lock, l.State)
			if l.Error != "" {
				fmt.Fprintf(&b, ": %s", l.Error)
			}
			b.WriteString("\n")
		}
	}
	if m := d.Migrations; m != nil {
		b.WriteString("\nMigrations (as migrun wait sees them)\n")
		switch {
		case m.Error != "":
			fmt.Fprintf(&b, "  %s\n", m.Error)
		case len(m.Unsure) > 0:
			fmt.Fprintf(&b, "  cannot tell: %s\n", strings.Join(m.Unsure, "; "))
		case m.Current:
			b.WriteString("  none pending\n")
		default:
			for _, p := range m.Pending {
				fmt.Fprintf(&b, "  pending: %s %s %s\n", p.Database, p.Version, p.Name)
			}
		}
	}
	if n := d.Notifications; n != nil {
		b.WriteString("\nNotifications (MIGRUN_NOTIFY=" + n.Policy + ")\n")
		slack := "not configured"
		if n.Slack {
			slack = "configured (" + n.SlackVia + ")"
		}
		webhook := "not configured"
		if n.Webhook {
			webhook = "configured"
		}
		fmt.Fprintf(&b, "  Slack: %s\n  result webhook: %s\n", slack, webhook)
		for _, receiver := range []string{"slack", "webhook"} {
			if r, ok := n.Test[receiver]; ok {
				fmt.Fprintf(&b, "  test message to %s: %s\n", receiver, r)
			}
		}
	}
	if len(d.Settings) > 0 {
		b.WriteString("\nSettings (a flag wins over a variable, a variable over the default)\n")
		for _, s := range d.Settings {
			from := s.Source
			if s.From != "" {
				from += " " + s.From
			}
			fmt.Fprintf(&b, "  %-36s %-24s %s\n", s.Variable, orDash(s.Value), from)
		}
	}
	_, _ = io.WriteString(w, d.scrub.String(b.String()))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
