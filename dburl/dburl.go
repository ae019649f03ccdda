// Package dburl parses database URLs the way Rails reads DATABASE_URL.
//
// Errors and String never contain the password: url.Parse puts the whole URL,
// password included, into its errors, so this package never returns them as is.
package dburl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
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

var schemes = map[string]Adapter{
	"postgres":   PostgreSQL,
	"postgresql": PostgreSQL,
	"mysql":      MySQL2,
	"mysql2":     MySQL2,
	"trilogy":    Trilogy,
	"sqlite3":    SQLite3,
	"sqlite":     SQLite3,
}

// secretParams are query parameters that carry secrets.
var secretParams = map[string]bool{"password": true, "sslpassword": true}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Parse reads raw as Rails reads DATABASE_URL.
func Parse(raw string) (*URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, invalid("empty")
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" {
		return nil, invalid("no scheme (want e.g. postgres://user:password@host/database)")
	}
	adapter, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return nil, invalid("unsupported scheme %q (want postgres, postgresql, mysql2, mysql, trilogy, sqlite3)", truncate(scheme, 20))
	}
	if adapter == SQLite3 {
		return parseSQLite(rest)
	}
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
			return nil, invalid("bad percent-escape in the user name")
		}
		if hasPass {
			if u.Password, err = url.PathUnescape(pass); err != nil {
				return nil, invalid("bad percent-escape in the password")
			}
		}
	}
	if err := u.parseHostPort(hostport); err != nil {
		return nil, err
	}
	path, query, _ := strings.Cut(tail, "?")
	query, _, _ = strings.Cut(query, "#")
	path, _, _ = strings.Cut(path, "#")
	db, err := url.PathUnescape(strings.TrimPrefix(path, "/"))
	if err != nil {
		return nil, invalid("bad percent-escape in the database name")
	}
	u.Database = db
	if err := u.parseQuery(query); err != nil {
		return nil, err
	}
	if u.Database == "" {
		u.Database = u.Params["database"]
	}
	if u.Database == "" {
		return nil, invalid("no database name")
	}
	if strings.Contains(u.Database, "/") {
		return nil, invalid("the database name contains '/'")
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
	} else if i := strings.LastIndex(hostport, ":"); i >= 0 {
		host, portStr = hostport[:i], hostport[i+1:]
	}
	h, err := url.PathUnescape(host)
	if err != nil {
		return invalid("bad percent-escape in the host")
	}
	if strings.ContainsAny(h, " \t\n") {
		return invalid("the host contains white space")
	}
	u.Host = h
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return invalid("bad port (want a number from 1 to 65535)")
		}
		u.Port = p
	}
	return nil
}

func (u *URL) parseQuery(query string) error {
	if query == "" {
		return nil
	}
	for _, pair := range strings.Split(query, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return invalid("bad percent-escape in a query parameter name")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return invalid("bad percent-escape in query parameter %q", truncate(key, 32))
		}
		u.Params[key] = val
	}
	return nil
}

// parseSQLite reads what follows "sqlite3:": a relative path, or //[host]/abs/path.
func parseSQLite(rest string) (*URL, error) {
	path, query, _ := strings.Cut(rest, "?")
	if strings.HasPrefix(path, "//") {
		// sqlite3:///abs/path: an empty host, the path absolute.
		hostAndPath := path[2:]
		slash := strings.Index(hostAndPath, "/")
		if slash < 0 {
			return nil, invalid("sqlite3 URL has no file path")
		}
		path = hostAndPath[slash:]
	}
	p, err := url.PathUnescape(path)
	if err != nil {
		return nil, invalid("bad percent-escape in the sqlite3 path")
	}
	if p == "" {
		return nil, invalid("sqlite3 URL has no file path")
	}
	if p == ":memory:" || strings.HasPrefix(p, "file::memory:") {
		return nil, invalid("sqlite3 :memory: has no file to lock")
	}
	u := &URL{Adapter: SQLite3, Database: p, Params: map[string]string{}}
	if err := u.parseQuery(query); err != nil {
		return nil, err
	}
	return u, nil
}

// Redacted is the URL with its secrets masked, safe to print.
func (u *URL) Redacted() string {
	var b strings.Builder
	b.WriteString(string(u.Adapter))
	if u.Adapter == SQLite3 {
		b.WriteString(":")
		b.WriteString(u.Database)
	} else {
		b.WriteString("://")
		if u.User != "" || u.Password != "" {
			b.WriteString(url.PathEscape(u.User))
			if u.Password != "" {
				b.WriteString(":xxxxx")
			}
			b.WriteString("@")
		}
		host := u.Host
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		} else {
			host = url.PathEscape(host)
		}
		b.WriteString(host)
		if u.Port != 0 {
			b.WriteString(":" + strconv.Itoa(u.Port))
		}
		b.WriteString("/" + url.PathEscape(u.Database))
	}
	if len(u.Params) > 0 {
		keys := make([]string, 0, len(u.Params))
		for k := range u.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			sep := "&"
			if i == 0 {
				sep = "?"
			}
			v := u.Params[k]
			if secretParams[k] {
				v = "xxxxx"
			}
			b.WriteString(sep + url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	return b.String()
}

// String is Redacted, so that printing a URL with %v never leaks.
func (u *URL) String() string { return u.Redacted() }

// Secrets are the URL's secret values, for scrubbing text migrun writes.
func (u *URL) Secrets() []string {
	var s []string
	if u.Password != "" {
		s = append(s, u.Password)
	}
	for k, v := range u.Params {
		if secretParams[k] && v != "" {
			s = append(s, v)
		}
	}
	return s
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
