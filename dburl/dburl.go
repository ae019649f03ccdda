// Package dburl parses database URLs the way Rails reads DATABASE_URL.
//
// Errors and String never contain the password: url.Parse puts the whole URL,
// password included, into its errors, so this package parses by hand and
// builds every message itself.
package dburl

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Adapter is the Rails adapter a URL resolves to.
type Adapter string

// The adapters Rails resolves from a URL's scheme.
const (
	PostgreSQL Adapter = "postgresql" // postgres://, postgresql://
	MySQL2     Adapter = "mysql2"     // mysql://, mysql2://
	Trilogy    Adapter = "trilogy"    // trilogy://
	SQLite3    Adapter = "sqlite3"    // sqlite3:path, sqlite3:///abs/path, sqlite://
)

// ErrInvalid is wrapped by every Parse error.
var ErrInvalid = errors.New("invalid database URL")

// URL is a parsed Rails database URL.
//
// As in Rails, the query parameters username, password, host, port and
// database override the URL's own parts; the fields hold the result.
type URL struct {
	Adapter  Adapter
	User     string
	Password string
	Host     string // empty: the driver's default (a local socket or localhost)
	Port     int    // 0: the adapter's default port
	Database string // database name; for sqlite3 the file path as given
	// Params are the query parameters, Rails' own (pool, encoding, ...) included;
	// each driver picks the ones that mean something to it.
	Params map[string]string

	// otherSecrets are secrets the fields no longer show: as written in
	// the URL (percent-escapes and all, how they appear if something
	// prints the URL), and a password the query overrode.
	otherSecrets []string
}

// IsMySQL reports whether the URL names a MySQL or MariaDB server.
func (u *URL) IsMySQL() bool { return u.Adapter == MySQL2 || u.Adapter == Trilogy }

// DefaultPort is the adapter's port when the URL names none.
func (u *URL) DefaultPort() int {
	switch {
	case u.Adapter == PostgreSQL:
		return 5432
	case u.IsMySQL():
		return 3306
	}
	return 0
}

// adapterOf is the adapter of a URL scheme (lower case). The tables of
// this package are switches and static slices, not maps: a package-level
// map is built at every start of migrun, whatever the subcommand.
func adapterOf(scheme string) (Adapter, bool) {
	switch scheme {
	case "postgres", "postgresql":
		return PostgreSQL, true
	case "mysql2":
		return MySQL2, true
	case "trilogy":
		return Trilogy, true
	case "sqlite3", "sqlite":
		return SQLite3, true
	}
	return "", false
}

// secretParam reports whether query parameter key carries a secret.
func secretParam(key string) bool { return key == "password" || key == "sslpassword" }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Parse reads raw as Rails reads DATABASE_URL. Surrounding white space (a
// trailing newline from a secret file) is ignored.
func Parse(raw string) (*URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, invalid("empty")
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, invalid("contains a control character (a line break?)")
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || !isScheme(scheme) {
		// Whatever precedes the colon may be a user and password: do not echo it.
		return nil, invalid("no scheme (want e.g. postgres://user:password@host/database)")
	}
	adapter, ok := adapterOf(strings.ToLower(scheme))
	if strings.EqualFold(scheme, "mysql") {
		// Rails takes the scheme as the adapter's name and has no "mysql"
		// adapter: the migration itself would fail to load one.
		return nil, invalid("Rails has no mysql adapter: write mysql2:// (or trilogy:// on Rails 7.1+)")
	}
	if !ok {
		return nil, invalid("unsupported scheme %q (want postgres, postgresql, mysql2, trilogy, sqlite3)", truncate(scheme, 20))
	}
	if adapter == SQLite3 {
		return parseSQLite(rest)
	}
	return parseServer(adapter, scheme, rest)
}

// isScheme reports whether s is a URL scheme as RFC 3986 spells them.
func isScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !('0' <= c && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// parseServer reads what follows "postgres:" and the like: //userinfo@host:port/database?query.
func parseServer(adapter Adapter, scheme, rest string) (*URL, error) {
	if !strings.HasPrefix(rest, "//") {
		return nil, invalid("%s URL must start with %s://", scheme, scheme)
	}
	authority, tail := rest[2:], ""
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority, tail = authority[:i], authority[i:]
	}
	u := &URL{Adapter: adapter, Params: map[string]string{}}
	hostport := authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo := authority[:at]
		hostport = authority[at+1:]
		if strings.Contains(userinfo, "@") {
			return nil, invalid("the user or password contains an unescaped '@': percent-encode it as %%40")
		}
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if u.User, err = url.PathUnescape(user); err != nil {
			return nil, invalid("bad percent-escape in the user name (write a literal %% as %%25)")
		}
		if hasPass {
			if u.Password, err = url.PathUnescape(pass); err != nil {
				return nil, invalid("bad percent-escape in the password (write a literal %% as %%25)")
			}
			u.otherSecrets = append(u.otherSecrets, pass, u.Password)
		}
	}
	if err := u.parseHostPort(hostport); err != nil {
		if !strings.Contains(authority, "@") && strings.Contains(tail, "@") {
			// postgres://user:pa/ss@host/db: the host:port we just read
			// was the start of a user and password.
			return nil, invalid("the user or password contains an unescaped '/', '?' or '#': percent-encode it (%%2F, %%3F, %%23)")
		}
		return nil, err
	}
	tail, _, _ = strings.Cut(tail, "#")
	path, query, _ := strings.Cut(tail, "?")
	db, err := url.PathUnescape(strings.TrimPrefix(path, "/"))
	if err != nil {
		return nil, invalid("bad percent-escape in the database name")
	}
	u.Database = db
	if err := u.parseQuery(query); err != nil {
		return nil, err
	}
	if err := u.applyParams(); err != nil {
		return nil, err
	}
	if u.Database == "" {
		return nil, invalid("no database name")
	}
	if strings.Contains(u.Database, "/") {
		return nil, invalid("the database name contains '/'")
	}
	if err := u.checkParams(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *URL) parseHostPort(hostport string) error {
	if hostport == "" {
		return nil
	}
	host, portStr := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return invalid("unclosed '[' in the host")
		}
		host = hostport[1:end]
		rest := hostport[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return invalid("unexpected text after the IPv6 host")
			}
			portStr = rest[1:]
		}
		h, err := url.PathUnescape(host) // a zone is written fe80::1%25eth0
		if err != nil {
			return invalid("bad percent-escape in the host")
		}
		if _, err := netip.ParseAddr(h); err != nil || !strings.Contains(h, ":") {
			return invalid("the host in brackets is not an IPv6 address")
		}
		u.Host = h
	} else {
		if i := strings.LastIndex(hostport, ":"); i >= 0 {
			host, portStr = hostport[:i], hostport[i+1:]
		}
		h, err := url.PathUnescape(host)
		if err != nil {
			return invalid("bad percent-escape in the host")
		}
		if strings.Contains(h, ":") {
			return invalid("bad host (an IPv6 address goes in brackets: [::1])")
		}
		if strings.ContainsAny(h, " \t") {
			return invalid("the host contains white space")
		}
		u.Host = h
	}
	if portStr != "" {
		p, err := parsePort(portStr)
		if err != nil {
			return err
		}
		u.Port = p
	}
	return nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || strings.TrimLeft(s, "0123456789") != "" || p < 1 || p > 65535 {
		return 0, invalid("bad port (want a number from 1 to 65535)")
	}
	return p, nil
}

// parseQuery decodes the query as Rails does: percent-escapes only, so a
// '+' stays a '+'; the last of repeated parameters wins.
func (u *URL) parseQuery(query string) error {
	for pair := range strings.SplitSeq(query, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.PathUnescape(k)
		if err != nil {
			return invalid("bad percent-escape in a query parameter name")
		}
		val, err := url.PathUnescape(v)
		if err != nil {
			return invalid("bad percent-escape in query parameter %q", truncate(key, 32))
		}
		u.Params[key] = val
		if secretParam(key) {
			u.otherSecrets = append(u.otherSecrets, v)
		}
	}
	return nil
}

// applyParams lets the query override the URL's parts, as Rails' URL
// resolver does; an empty parameter overrides nothing.
func (u *URL) applyParams() error {
	p := u.Params
	if v := p["username"]; v != "" {
		u.User = v
	}
	if v := p["password"]; v != "" {
		u.Password = v
	}
	if v := p["host"]; v != "" {
		u.Host = v
	}
	if v := p["port"]; v != "" {
		port, err := parsePort(v)
		if err != nil {
			return err
		}
		u.Port = port
	}
	if v := p["database"]; v != "" {
		u.Database = v
	}
	return nil
}

// parseSQLite reads what follows "sqlite3:": a relative path, or //[host]/abs/path.
func parseSQLite(rest string) (*URL, error) {
	rest, _, _ = strings.Cut(rest, "#")
	path, query, _ := strings.Cut(rest, "?")
	if strings.HasPrefix(path, "//") {
		// sqlite3:///abs/path: an empty host, the path absolute.
		slash := strings.Index(path[2:], "/")
		if slash < 0 {
			return nil, invalid("sqlite3 URL has no file path (want sqlite3:relative/path or sqlite3:///absolute/path)")
		}
		if host := path[2 : 2+slash]; host != "" && host != "localhost" {
			// Rails ignores the host and takes the path as absolute:
			// sqlite3://db/x.sqlite3 is the file /x.sqlite3.
			return nil, invalid("sqlite3://%s/... names a host, which sqlite3 ignores: the file would be %s (write sqlite3:%s%s for a path relative to the app, or sqlite3:///... for an absolute one)",
				truncate(host, 20), truncate(path[2+slash:], 40), truncate(host, 20), truncate(path[2+slash:], 40))
		}
		path = path[2+slash:]
	}
	p, err := url.PathUnescape(path)
	if err != nil {
		return nil, invalid("bad percent-escape in the sqlite3 path")
	}
	if p == "" {
		return nil, invalid("sqlite3 URL has no file path (want sqlite3:relative/path or sqlite3:///absolute/path)")
	}
	u := &URL{Adapter: SQLite3, Database: p, Params: map[string]string{}}
	if err := u.parseQuery(query); err != nil {
		return nil, err
	}
	if err := u.checkParams(); err != nil {
		return nil, err
	}
	if p == ":memory:" || strings.HasPrefix(p, "file::memory:") || u.Params["mode"] == "memory" {
		return nil, invalid("sqlite3 :memory: has no file to lock")
	}
	return u, nil
}

// Redacted is the URL with its secrets masked, safe to print. Parsing it
// gives the same URL, but for the secrets.
func (u *URL) Redacted() string {
	var b strings.Builder
	b.WriteString(string(u.Adapter))
	if u.Adapter == SQLite3 {
		b.WriteString(":")
		if strings.HasPrefix(u.Database, "/") {
			b.WriteString("//")
		}
		segments := strings.Split(u.Database, "/")
		for i, seg := range segments {
			segments[i] = escape(seg)
		}
		b.WriteString(strings.Join(segments, "/"))
	} else {
		// A part the query overrides is shown only there.
		shown := func(key, v string) bool { return v != "" && u.Params[key] != v }
		b.WriteString("://")
		user := shown("username", u.User)
		pass := shown("password", u.Password)
		if user || pass {
			if user {
				b.WriteString(escape(u.User))
			}
			if pass {
				b.WriteString(":xxxxx")
			}
			b.WriteString("@")
		}
		if shown("host", u.Host) {
			if strings.Contains(u.Host, ":") {
				b.WriteString("[" + strings.ReplaceAll(escape(u.Host), "%3A", ":") + "]")
			} else {
				b.WriteString(escape(u.Host))
			}
		}
		if u.Port != 0 && shown("port", strconv.Itoa(u.Port)) {
			b.WriteString(":" + strconv.Itoa(u.Port))
		}
		b.WriteString("/")
		if shown("database", u.Database) {
			b.WriteString(escape(u.Database))
		}
	}
	sep := "?"
	for _, k := range slices.Sorted(maps.Keys(u.Params)) {
		v := u.Params[k]
		if secretParam(k) && v != "" {
			v = "xxxxx"
		}
		b.WriteString(sep + escape(k) + "=" + escape(v))
		sep = "&"
	}
	return b.String()
}

// escape percent-encodes everything that could end a URL part. Unlike
// url.QueryEscape it writes a space as %20: Rails reads '+' as itself.
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// String is Redacted, so that printing a URL with %v never leaks.
func (u *URL) String() string { return u.Redacted() }

// Secrets are the URL's secret values, decoded and as written in the URL,
// for scrubbing text migrun writes.
func (u *URL) Secrets() []string {
	var s []string
	if u.Password != "" {
		s = append(s, u.Password)
	}
	for k, v := range u.Params {
		if secretParam(k) && v != "" {
			s = append(s, v)
		}
	}
	for _, v := range u.otherSecrets {
		if v != "" {
			s = append(s, v)
		}
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// Address is host:port for TCP, with the default port filled in.
func (u *URL) Address(defaultHost string) string {
	host := u.Host
	if host == "" {
		host = defaultHost
	}
	port := u.Port
	if port == 0 {
		port = u.DefaultPort()
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// SecretsOf finds what may be secret in raw even when it is not a valid
// URL (an unescaped '@' in the password, say), for scrubbing the error that
// says so: the password between "//" and the last "@", as written and
// decoded, and any password= query value. A valid URL's Secrets say the same.
func SecretsOf(raw string) []string {
	var s []string
	if u, err := Parse(raw); err == nil {
		s = u.Secrets()
	}
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				s = append(s, pw)
				if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
					s = append(s, dec)
				}
			}
		}
	}
	if _, query, ok := strings.Cut(raw, "?"); ok {
		for _, kv := range strings.Split(query, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && secretParam(k) && v != "" {
				s = append(s, v)
			}
		}
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// Parts are a database given as separate settings rather than a URL (the
// libpq variables PGHOST, PGUSER, ..., or MySQL's), so that nothing needs
// percent-encoding.
type Parts struct {
	Adapter                        Adapter
	Host, Port, User, Password, DB string
	Params                         map[string]string // e.g. sslmode
}

// FromParts builds the URL the parts describe, checked as Parse checks a URL.
func FromParts(p Parts) (*URL, error) {
	if adapterParams(p.Adapter) == nil || p.Adapter == SQLite3 {
		return nil, invalid("unsupported adapter %q (want postgresql, mysql2 or trilogy)", truncate(string(p.Adapter), 20))
	}
	u := &URL{Adapter: p.Adapter, User: p.User, Password: p.Password, Host: p.Host, Database: p.DB, Params: map[string]string{}}
	for k, v := range p.Params {
		if v != "" {
			u.Params[k] = v
		}
	}
	if p.Password != "" {
		u.otherSecrets = append(u.otherSecrets, p.Password)
	}
	if p.Port != "" {
		port, err := parsePort(p.Port)
		if err != nil {
			return nil, err
		}
		u.Port = port
	}
	if u.Database == "" {
		return nil, invalid("no database name")
	}
	if err := u.checkParams(); err != nil {
		return nil, err
	}
	return u, nil
}
