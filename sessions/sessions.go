// Package sessions carries migrun's settings into the database sessions of
// the migration command, which migrun does not open itself: through the
// routes the command's clients honour (libpq's PGOPTIONS, a DATABASE_URL's
// query parameters that Rails' mysql2 adapter reads).
//
// Two settings travel this way: dead-client detection on PostgreSQL (a
// migration whose client vanished mid-transaction otherwise keeps its table
// locks until TCP keepalive gives up, about two hours; MySQL has no route
// that spares live clients, see Apply) and a DDL lock timeout (a migration
// queued behind a long transaction otherwise blocks every query on the
// table, for as long as it waits).
package sessions

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/migrun/migrun/dburl"
)

// Settings for the command's own database sessions.
type Settings struct {
	// DeadClientTimeout is the bound D within which a PostgreSQL server
	// ends a session whose client vanished, freeing its locks; 0: off.
	// Not applied to MySQL sessions (see Apply).
	DeadClientTimeout time.Duration
	// LockTimeout bounds each wait for a table lock (PostgreSQL lock_timeout,
	// MySQL lock_wait_timeout); 0: off. statement_timeout is never touched:
	// a migration may rightly run for hours.
	LockTimeout time.Duration
}

// Postgres is what migrun knows about how startup options reach the
// PostgreSQL server the command uses; Probe finds it out. The zero value
// means "not PostgreSQL, or not probed": Apply then sets no PGOPTIONS and
// says nothing about it.
type Postgres struct {
	// OptionsReach: startup options (PGOPTIONS, a URL's options) reach the
	// server and are applied. False behind a pooler that refuses them (the
	// command's connections would fail) or ignores them.
	OptionsReach bool
	// Why, when !OptionsReach: what the probe found, for the start-up note.
	Why string
	// Version is the server's server_version_num (150004 for 15.4); 0 when
	// unknown. A server refuses a connection whose options name a setting
	// it does not know, so settings newer than PostgreSQL 9.4 are sent only
	// when the version says the server has them.
	Version int
}

// PostgreSQL versions (server_version_num) that introduced settings Apply uses.
const (
	pgTCPUserTimeout          = 120000 // tcp_user_timeout: PostgreSQL 12
	pgClientConnectionCheck   = 140000 // client_connection_check_interval: PostgreSQL 14
	clientConnectionCheckTick = time.Second
)

// keepalive is the server-side TCP settings derived from the bound D.
type keepalive struct {
	idle, interval time.Duration // first probe after idle, then one per interval
	count          int           // probes unanswered before giving up (when tcp_user_timeout is not set)
	userTimeout    time.Duration // unacknowledged data or probes for this long end the connection
}

// deadClient derives the TCP settings from the bound d as for the lock's
// own connection: L = d - 2s leaves the server two seconds to notice the
// dead socket and roll back. Linux gives up on a probed idle connection once
// nothing has been heard for tcp_user_timeout = L; without it (older servers)
// after idle + count*interval <= L.
func deadClient(d time.Duration) keepalive {
	l := max(d-2*time.Second, time.Second)
	idle := max((l / 2).Truncate(time.Second), time.Second)
	count := int(max((l-idle)/time.Second, 1))
	return keepalive{idle: idle, interval: time.Second, count: min(count, 5), userTimeout: l.Truncate(time.Millisecond)}
}

// pgDuration writes d in PostgreSQL's units: whole seconds as "5s", else
// milliseconds (rounded up) as "1500ms".
func pgDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", (d+time.Millisecond-1)/time.Millisecond)
}

// mysqlSeconds is d in whole seconds, rounded up: MySQL's lock_wait_timeout
// takes whole seconds, and rounding down could make 0.5s mean "no wait".
func mysqlSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// setting is one PostgreSQL setting, name=value.
type setting struct{ name, value string }

// pgSettings are the PostgreSQL settings for s on a server of the given
// version (server_version_num, 0 unknown), and notes on those it cannot take.
func pgSettings(s Settings, version int) ([]setting, []string) {
	var out []setting
	var notes []string
	if s.DeadClientTimeout > 0 {
		k := deadClient(s.DeadClientTimeout)
		out = append(out,
			setting{"tcp_keepalives_idle", pgDuration(k.idle)},
			setting{"tcp_keepalives_interval", pgDuration(k.interval)},
			setting{"tcp_keepalives_count", strconv.Itoa(k.count)})
		switch {
		case version >= pgTCPUserTimeout:
			out = append(out, setting{"tcp_user_timeout", pgDuration(k.userTimeout)})
		case version == 0:
			notes = append(notes, "PostgreSQL version unknown: tcp_user_timeout and client_connection_check_interval not sent (a server older than 12 or 14 would refuse the connection); a migration session whose client vanishes mid-statement is not ended")
		default:
			notes = append(notes, fmt.Sprintf("PostgreSQL %s has no tcp_user_timeout (12+) or client_connection_check_interval (14+): a migration session whose client vanishes mid-statement is not ended", pgVersion(version)))
		}
		if version >= pgClientConnectionCheck {
			// Without it a backend busy with a statement (or waiting for a
			// lock) notices the dead socket only when the statement ends.
			out = append(out, setting{"client_connection_check_interval", pgDuration(clientConnectionCheckTick)})
		} else if version >= pgTCPUserTimeout {
			notes = append(notes, fmt.Sprintf("PostgreSQL %s has no client_connection_check_interval (14+): a migration session whose client vanishes mid-statement is ended only when the statement ends", pgVersion(version)))
		}
	}
	if s.LockTimeout > 0 {
		out = append(out, setting{"lock_timeout", pgDuration(s.LockTimeout)})
	}
	return out, notes
}

func pgVersion(v int) string {
	if v >= 100000 {
		return strconv.Itoa(v / 10000)
	}
	return fmt.Sprintf("%d.%d", v/10000, v/100%100)
}

// Apply returns the command's environment with the settings added, and one
// line per thing it could not apply and why, for migrun to log at start-up.
// The lines name variables and settings, never a URL or a password.
//
//   - PostgreSQL, when pg.OptionsReach: "-c name=value" options appended to
//     PGOPTIONS (libpq reads it; the server applies the last of repeated
//     names). A PostgreSQL DATABASE_URL or <NAME>_DATABASE_URL with its own
//     options parameter overrides PGOPTIONS in libpq, so the options are
//     appended to that parameter too.
//   - MySQL (mysql2:// and trilogy:// in DATABASE_URL and <NAME>_DATABASE_URL):
//     the DDL lock timeout only, for mysql2 as init_command setting the
//     session's lock_wait_timeout (mysql2 runs it on connect). MySQL has no
//     per-session dead-client detection that spares a live client: its only
//     route, wait_timeout, also ends a healthy session idle for that long,
//     and Rails 6.1+ holds its own migration lock on a connection that sits
//     idle for the whole migration, so any migration longer than the bound
//     would fail at its end ("Server has gone away"). Rails runs MySQL
//     migrations outside transactions, so a vanished one holds metadata
//     locks only for the statement in progress (which the DDL lock timeout
//     bounds while it waits) or an explicit transaction block.
//
// A setting the app already makes (the same name in PGOPTIONS, a URL's
// init_command) is the app's decision: Apply keeps it and says so. environ
// is not modified.
func Apply(environ map[string]string, s Settings, pg Postgres) (map[string]string, []string) {
	out := maps.Clone(environ)
	var notes []string
	if s.DeadClientTimeout <= 0 && s.LockTimeout <= 0 {
		return out, nil
	}
	notes = append(notes, applyPostgres(out, s, pg)...)
	notes = append(notes, applyMySQL(out, s)...)
	return out, notes
}

// applyPostgres sets PGOPTIONS and the options parameter of PostgreSQL URLs.
func applyPostgres(env map[string]string, s Settings, pg Postgres) []string {
	if !pg.OptionsReach {
		if pg.Why == "" {
			return nil // not PostgreSQL, or not probed
		}
		return []string{fmt.Sprintf("PGOPTIONS not set: %s; the command's PostgreSQL sessions get %s. "+
			"Through PgBouncer set them for the migration's role instead (ALTER ROLE ... SET lock_timeout = ...) and bound dead clients with PgBouncer's own tcp_keepalive and tcp_user_timeout",
			pg.Why, missing(s))}
	}
	settings, notes := pgSettings(s, pg.Version)
	add, kept := additions(env["PGOPTIONS"], settings)
	if add != "" {
		env["PGOPTIONS"] = strings.TrimSpace(env["PGOPTIONS"] + " " + add)
	}
	if len(kept) > 0 {
		notes = append(notes, fmt.Sprintf("PGOPTIONS already sets %s: the app's value kept", strings.Join(kept, ", ")))
	}
	for _, name := range urlVariables(env) {
		u, err := dburl.Parse(env[name])
		if err != nil || u.Adapter != dburl.PostgreSQL || u.Params["options"] == "" {
			continue
		}
		// libpq takes a connection's own options parameter over PGOPTIONS.
		add, kept := additions(u.Params["options"], settings)
		if add != "" {
			env[name] = setQueryParam(env[name], "options", rawParam(env[name], "options")+escape(" "+add))
		}
		if len(kept) > 0 {
			notes = append(notes, fmt.Sprintf("%s's options parameter already sets %s: the app's value kept", name, strings.Join(kept, ", ")))
		}
	}
	return notes
}

// missing names what the settings would have given, for notes.
func missing(s Settings) string {
	var what []string
	if s.DeadClientTimeout > 0 {
		what = append(what, fmt.Sprintf("no dead-client detection (a vanished migration keeps its locks until TCP keepalive gives up, about two hours, instead of %s)", s.DeadClientTimeout))
	}
	if s.LockTimeout > 0 {
		what = append(what, fmt.Sprintf("no lock timeout (a migration waits for a table lock as long as it takes, instead of %s)", s.LockTimeout))
	}
	return strings.Join(what, " and ")
}

// additions are the "-c name=value" options for each setting the startup
// options opts do not already set; kept are the names opts sets itself.
func additions(opts string, settings []setting) (string, []string) {
	set := optionNames(opts)
	var add, kept []string
	for _, st := range settings {
		if set[st.name] {
			kept = append(kept, st.name)
			continue
		}
		add = append(add, "-c "+st.name+"="+st.value)
	}
	return strings.Join(add, " "), kept
}

// optionNames are the settings a startup options string sets, read as the
// server reads it: words split at unescaped white space, a backslash
// escaping the next character; "-c name=value", "-cname=value" and
// "--name=value" set name, where '-' in a name means '_' and case does not
// matter.
func optionNames(opts string) map[string]bool {
	var words []string
	var w strings.Builder
	inWord, escaped := false, false
	for _, r := range opts {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	names := map[string]bool{}
	for i := 0; i < len(words); i++ {
		var assignment string
		switch word := words[i]; {
		case word == "-c" && i+1 < len(words):
			i++
			assignment = words[i]
		case strings.HasPrefix(word, "--"):
			assignment = word[2:]
		case strings.HasPrefix(word, "-c"):
			assignment = word[2:]
		default:
			continue
		}
		name, _, _ := strings.Cut(assignment, "=")
		if name == "" {
			continue
		}
		names[strings.ToLower(strings.ReplaceAll(name, "-", "_"))] = true
	}
	return names
}

// applyMySQL adds init_command (lock_wait_timeout) to the MySQL URLs.
func applyMySQL(env map[string]string, s Settings) []string {
	if s.LockTimeout <= 0 {
		return nil // the only setting MySQL sessions get
	}
	var notes []string
	urls, rounded := 0, false
	for _, name := range urlVariables(env) {
		raw := env[name]
		u, err := dburl.Parse(raw)
		if err != nil {
			if looksMySQL(raw) {
				notes = append(notes, fmt.Sprintf("%s: settings not added, the URL does not parse: %v", name, err))
			}
			continue
		}
		if !u.IsMySQL() {
			continue
		}
		urls++
		if s.LockTimeout > 0 {
			secs := mysqlSeconds(s.LockTimeout)
			switch {
			case u.Adapter == dburl.Trilogy:
				notes = append(notes, fmt.Sprintf("%s uses trilogy, which has no init_command: no lock_wait_timeout for its sessions; set variables: { lock_wait_timeout: %d } in config/database.yml", name, secs))
			case u.Params["init_command"] != "":
				notes = append(notes, fmt.Sprintf("%s sets init_command itself: lock_wait_timeout=%d not added; add it to that statement (SET @@SESSION.lock_wait_timeout=%d, ...)", name, secs, secs))
			default:
				raw = setQueryParam(raw, "init_command", escape(fmt.Sprintf("SET @@SESSION.lock_wait_timeout=%d", secs)))
				rounded = time.Duration(secs)*time.Second != s.LockTimeout
			}
		}
		env[name] = raw
	}
	if rounded {
		notes = append(notes, fmt.Sprintf("MySQL's lock_wait_timeout takes whole seconds: %s rounded up to %ds", s.LockTimeout, mysqlSeconds(s.LockTimeout)))
	}
	if urls == 0 {
		if u, err := dburl.Parse(env["MIGRUN_DATABASE_URL"]); err == nil && u.IsMySQL() {
			notes = append(notes, fmt.Sprintf("no DATABASE_URL: Rails reads its MySQL database from config/database.yml, which migrun cannot change; set %s there", mysqlYAML(s)))
		}
	}
	return notes
}

func mysqlYAML(s Settings) string {
	var parts []string
	if s.LockTimeout > 0 {
		parts = append(parts, fmt.Sprintf("variables: { lock_wait_timeout: %d }", mysqlSeconds(s.LockTimeout)))
	}
	return strings.Join(parts, " and ")
}

func looksMySQL(raw string) bool {
	scheme, _, _ := strings.Cut(strings.TrimSpace(raw), ":")
	switch strings.ToLower(scheme) {
	case "mysql", "mysql2", "trilogy":
		return true
	}
	return false
}

// railsURLVariable matches the variables Rails reads database URLs from:
// DATABASE_URL for primary, <NAME>_DATABASE_URL for the others.
var railsURLVariable = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([A-Z0-9_]+_)?DATABASE_URL$`) }) // compiled on first use, not at start-up

// urlVariables are the Rails database URL variables in env, sorted.
// MIGRUN_DATABASE_URL is migrun's own.
func urlVariables(env map[string]string) []string {
	var names []string
	for name := range env {
		if railsURLVariable().MatchString(name) && name != "MIGRUN_DATABASE_URL" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// setQueryParam appends key=rawValue (already escaped) to the URL's query,
// before any fragment, leaving the rest of the URL exactly as written.
// When the key is already present, its last occurrence (the one Rails
// reads) is replaced.
func setQueryParam(raw, key, rawValue string) string {
	raw = strings.TrimSpace(raw)
	base, fragment, hasFragment := strings.Cut(raw, "#")
	path, query, hasQuery := strings.Cut(base, "?")
	pairs := []string{}
	if hasQuery && query != "" {
		pairs = strings.Split(query, "&")
	}
	replaced := false
	for i := len(pairs) - 1; i >= 0; i-- {
		if k, _, _ := strings.Cut(pairs[i], "="); unescape(k) == key {
			pairs[i] = key + "=" + rawValue
			replaced = true
			break
		}
	}
	if !replaced {
		pairs = append(pairs, key+"="+rawValue)
	}
	out := path + "?" + strings.Join(pairs, "&")
	if hasFragment {
		out += "#" + fragment
	}
	return out
}

// rawParam is the last occurrence of key's value in the URL's query, as written.
func rawParam(raw, key string) string {
	base, _, _ := strings.Cut(strings.TrimSpace(raw), "#")
	_, query, _ := strings.Cut(base, "?")
	value := ""
	for pair := range strings.SplitSeq(query, "&") {
		if k, v, _ := strings.Cut(pair, "="); unescape(k) == key {
			value = v
		}
	}
	return value
}

// escape percent-encodes a query value as Rails decodes it: Rails'
// URL resolver percent-decodes values but reads '+' as itself, and its URI
// parser rejects a literal space, so a space is written %20.
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
