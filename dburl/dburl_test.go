package dburl

import (
	"errors"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fields is u without its unexported bookkeeping, for comparisons.
func fields(u *URL) URL {
	c := *u
	c.otherSecrets = nil
	return c
}

func TestParse(t *testing.T) {
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		raw  string
		want URL
	}{
		// The examples of Rails' guides and tests.
		{"postgres://localhost/foo", URL{Adapter: PostgreSQL, Host: "localhost", Database: "foo"}},
		{"postgresql://user:p%40ss@db:5433/app_production?sslmode=require&pool=5",
			URL{Adapter: PostgreSQL, User: "user", Password: "p@ss", Host: "db", Port: 5433, Database: "app_production", Params: p("sslmode", "require", "pool", "5")}},
		{"mysql2://root@127.0.0.1:3306/app?encoding=utf8mb4", URL{Adapter: MySQL2, User: "root", Host: "127.0.0.1", Port: 3306, Database: "app", Params: p("encoding", "utf8mb4")}},
		{"trilogy://u:pw@db:3307/app?ssl=true&ssl_mode=REQUIRED", URL{Adapter: Trilogy, User: "u", Password: "pw", Host: "db", Port: 3307, Database: "app", Params: p("ssl", "true", "ssl_mode", "REQUIRED")}},
		{"  POSTGRES://h/db\n", URL{Adapter: PostgreSQL, Host: "h", Database: "db"}},

		// Sockets.
		{"postgres:///app?host=/var/run/postgresql", URL{Adapter: PostgreSQL, Host: "/var/run/postgresql", Database: "app", Params: p("host", "/var/run/postgresql")}},
		{"postgresql://%2Fvar%2Frun%2Fpostgresql/app", URL{Adapter: PostgreSQL, Host: "/var/run/postgresql", Database: "app"}},
		{"mysql2://root@localhost/app?socket=/run/mysqld/mysqld.sock", URL{Adapter: MySQL2, User: "root", Host: "localhost", Database: "app", Params: p("socket", "/run/mysqld/mysqld.sock")}},

		// IPv6.
		{"postgres://u@[::1]:5432/db", URL{Adapter: PostgreSQL, User: "u", Host: "::1", Port: 5432, Database: "db"}},
		{"mysql2://[2001:db8::7]/db", URL{Adapter: MySQL2, Host: "2001:db8::7", Database: "db"}},
		{"postgres://[fe80::1%25eth0]:5433/db", URL{Adapter: PostgreSQL, Host: "fe80::1%eth0", Port: 5433, Database: "db"}},

		// Userinfo.
		{"postgres://u:@h/db", URL{Adapter: PostgreSQL, User: "u", Host: "h", Database: "db"}},
		{"postgres://:pw@h/db", URL{Adapter: PostgreSQL, Password: "pw", Host: "h", Database: "db"}},
		{"postgres://d%C3%A9v:a%3Ab%2Fc%3Fd%23e%25f+g@h/db", URL{Adapter: PostgreSQL, User: "dév", Password: "a:b/c?d#e%f+g", Host: "h", Database: "db"}},
		{"postgres://u:a:b@h/db", URL{Adapter: PostgreSQL, User: "u", Password: "a:b", Host: "h", Database: "db"}},

		// Ports, paths, queries.
		{"postgres://h:/db", URL{Adapter: PostgreSQL, Host: "h", Database: "db"}},
		{"postgres://h:65535/db", URL{Adapter: PostgreSQL, Host: "h", Port: 65535, Database: "db"}},
		{"postgres://h/my%20db?application_name=a%26b+c", URL{Adapter: PostgreSQL, Host: "h", Database: "my db", Params: p("application_name", "a&b+c")}},
		{"postgres://h/db?pool=5&pool=10&&reconnect", URL{Adapter: PostgreSQL, Host: "h", Database: "db", Params: p("pool", "10", "reconnect", "")}},
		{"postgres://h/db#fragment", URL{Adapter: PostgreSQL, Host: "h", Database: "db"}},
		{"postgres://h/db?sslmode=verify-full#x", URL{Adapter: PostgreSQL, Host: "h", Database: "db", Params: p("sslmode", "verify-full")}},

		// Rails lets the query override the URL's parts.
		{"postgres://u:pw@h:5432/db?username=v&password=qw&host=g&port=6432&database=other",
			URL{Adapter: PostgreSQL, User: "v", Password: "qw", Host: "g", Port: 6432, Database: "other", Params: p("username", "v", "password", "qw", "host", "g", "port", "6432", "database", "other")}},
		{"mysql2://u@h/?database=app", URL{Adapter: MySQL2, User: "u", Host: "h", Database: "app", Params: p("database", "app")}},
		{"postgres://h/db?host=&database=", URL{Adapter: PostgreSQL, Host: "h", Database: "db", Params: p("host", "", "database", "")}},

		// SQLite.
		{"sqlite3:db/development.sqlite3", URL{Adapter: SQLite3, Database: "db/development.sqlite3"}},
		{"sqlite3:///abs/path.sqlite3", URL{Adapter: SQLite3, Database: "/abs/path.sqlite3"}},
		{"sqlite3:/abs/path.sqlite3", URL{Adapter: SQLite3, Database: "/abs/path.sqlite3"}},
		{"sqlite3://localhost/abs/path.sqlite3", URL{Adapter: SQLite3, Database: "/abs/path.sqlite3"}},
		{"sqlite3:relative?mode=rwc", URL{Adapter: SQLite3, Database: "relative", Params: p("mode", "rwc")}},
		{"sqlite:db/my%20app.db?timeout=5000", URL{Adapter: SQLite3, Database: "db/my app.db", Params: p("timeout", "5000")}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := Parse(tt.raw)
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if tt.want.Params == nil {
				tt.want.Params = map[string]string{}
			}
			if !reflect.DeepEqual(fields(got), tt.want) {
				t.Errorf("Parse() =\n %+v, want\n %+v", fields(got), tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const pw = "Sup3rSecret"
	tests := []struct{ raw, want string }{
		{"", "invalid database URL: empty"},
		{" \n", "invalid database URL: empty"},
		{"oracle://u:" + pw + "@h/db", `invalid database URL: unsupported scheme "oracle" (want postgres, postgresql, mysql2, trilogy, sqlite3)`},
		{"localhost/db", "no scheme"},
		{"u:" + pw + "@h/db", `unsupported scheme "u"`},
		{pw + "@h:5432/db", "no scheme"},
		{"://u:" + pw + "@h/db", "no scheme"},
		{"postgres://u:" + pw + "@h", "invalid database URL: no database name"},
		{"postgres://u:" + pw + "@h/", "invalid database URL: no database name"},
		{"postgres://u:" + pw + "@h?pool=5", "invalid database URL: no database name"},
		{"mysql2://u:" + pw + "@h/a/b", "contains '/'"},
		{"postgres://u:p@" + pw + "@h/db", "unescaped '@': percent-encode it as %40"},
		{"postgres://u@" + pw + ":p@h/db", "unescaped '@'"},
		{"postgres://u:" + pw + "/x@h/db", "unescaped '/', '?' or '#'"},
		{"postgres://u:" + pw + "?x@h/db", "unescaped '/', '?' or '#'"},
		{"postgres://u:" + pw + "#x@h/db", "unescaped '/', '?' or '#'"},
		{"postgres://u:" + pw + "@h:99999/db", "bad port"},
		{"postgres://u:" + pw + "@h:0/db", "bad port"},
		{"postgres://u:" + pw + "@h:+5432/db", "bad port"},
		{"postgres://u:" + pw + "@h:54x/db", "bad port"},
		{"postgres://u:" + pw + "@h/db?port=high", "bad port"},
		{"postgres://u:" + pw + "/db", "bad port"},
		{"postgres://u:" + pw + "%zz@h/db", "bad percent-escape in the password"},
		{"postgres://u%zz:" + pw + "@h/db", "bad percent-escape in the user name"},
		{"postgres://u:" + pw + "@h%zz/db", "bad percent-escape in the host"},
		{"postgres://u:" + pw + "@h/d%zz", "bad percent-escape in the database name"},
		{"postgres://u:" + pw + "@h/db?sslmode=%zz", `bad percent-escape in query parameter "sslmode"`},
		{"postgres://u:" + pw + "@h/db?%zz=1", "bad percent-escape in a query parameter name"},
		{"postgres://u:" + pw + "@h h/db", "white space"},
		{"postgres://u:" + pw + "@::1/db", "IPv6 address goes in brackets"},
		{"mysql2://u:" + pw + "@[::1/db", "unclosed '['"},
		{"mysql2://u:" + pw + "@[::1]x/db", "unexpected text after the IPv6 host"},
		{"mysql2://u:" + pw + "@[db.example]/db", "not an IPv6 address"},
		{"postgres:u:" + pw + "@h/db", "postgres URL must start with postgres://"},
		{"postgres://u:" + pw + "@h/db\nx", "control character"},
		{"sqlite3::memory:", ":memory:"},
		{"sqlite3::memory:?cache=shared", ":memory:"},
		{"sqlite3:file::memory:", ":memory:"},
		{"sqlite3:db?mode=memory", ":memory:"},
		{"sqlite3:", "no file path"},
		{"sqlite3://dev.sqlite3", "no file path"},
		{"sqlite3:%zz", "bad percent-escape in the sqlite3 path"},
		{"mysql://u:" + pw + "@db/app", "Rails has no mysql adapter: write mysql2://"},
		{"sqlite3://db/x.sqlite3", "names a host, which sqlite3 ignores: the file would be /x.sqlite3 (write sqlite3:db/x.sqlite3"},
		{"postgres://u:" + pw + "@h/db?foo=bar", `unknown query parameter "foo" for postgresql`},
		{"postgres://u:" + pw + "@h/db?sslmode=disabled", `sslmode="disabled" is not one of disable, allow, prefer, require, verify-ca, verify-full`},
		{"mysql2://u:" + pw + "@h/db?ssl_mode=on", `ssl_mode="on" is not one of disabled`},
		{"mysql2://u:" + pw + "@h/db?sslmode=require", `unknown query parameter "sslmode" for mysql2`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := Parse(tt.raw)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.raw, fields(u))
			}
			msg := err.Error()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(msg, tt.want) {
				t.Errorf("Parse() error = %q, want ErrInvalid containing %q", msg, tt.want)
			}
			if strings.Contains(msg, "Sup3r") || strings.Contains(msg, "\n") {
				t.Errorf("error leaks the password or is not one line: %q", msg)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"postgres://app:s3cr%2Ft@db:5432/app?sslmode=require&sslpassword=k3y", "postgresql://app:xxxxx@db:5432/app?sslmode=require&sslpassword=xxxxx"},
		{"postgres://h/db", "postgresql://h/db"},
		{"postgres://:pw@h/db", "postgresql://:xxxxx@h/db"},
		{"postgres://u:@h/db", "postgresql://u@h/db"},
		{"mysql2://d%C3%A9v%3Ax:pw@[::1]:3307/my%20db?encoding=utf8mb4&init_command=a%26b+c", "mysql2://d%C3%A9v%3Ax:xxxxx@[::1]:3307/my%20db?encoding=utf8mb4&init_command=a%26b%2Bc"},
		{"postgres://[fe80::1%25eth0]/db", "postgresql://[fe80::1%25eth0]/db"},
		{"postgres:///app?host=/var/run/postgresql", "postgresql:///app?host=%2Fvar%2Frun%2Fpostgresql"},
		// The query overrides: each part is shown where it takes effect.
		{"postgres://u:pw@h:5432/db?password=other&port=6432&database=d2", "postgresql://u@h/?database=d2&password=xxxxx&port=6432"},
		{"trilogy://u:pw@h/db?username=v", "trilogy://:xxxxx@h/db?username=v"},
		{"sqlite3:db/dev.sqlite3", "sqlite3:db/dev.sqlite3"},
		{"sqlite3:///abs/dev.sqlite3?timeout=5000", "sqlite3:///abs/dev.sqlite3?timeout=5000"},
		{"sqlite3:db/a%3Fb%23c%25d.sqlite3?password=pw", "sqlite3:db/a%3Fb%23c%25d.sqlite3?password=xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got := u.Redacted()
			if got != tt.want {
				t.Errorf("Redacted() = %q, want %q", got, tt.want)
			}
			if s := u.String(); s != got {
				t.Errorf("String() = %q, differs from Redacted()", s)
			}
			assertRoundTrip(t, u)
		})
	}
}

// assertRoundTrip checks that the redacted URL reads back as u, but for
// the secrets.
func assertRoundTrip(t *testing.T, u *URL) {
	t.Helper()
	back, err := Parse(u.Redacted())
	if err != nil {
		t.Fatalf("Parse(Redacted()) error = %v", err)
	}
	want := fields(u)
	want.Params = maps.Clone(u.Params)
	if want.Password != "" {
		want.Password = "xxxxx"
	}
	for k, v := range want.Params {
		if secretParam(k) && v != "" {
			want.Params[k] = "xxxxx"
		}
	}
	if got := fields(back); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(%q) =\n %+v, want\n %+v", u.Redacted(), got, want)
	}
}

func TestSecrets(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
	}{
		{"postgres://h/db", nil},
		{"postgres://u:@h/db", nil},
		{"postgres://u:pw@h/db", []string{"pw"}},
		// Decoded, and as written, which is how a printed URL shows it.
		{"postgres://u:p%40ss@h/db", []string{"p%40ss", "p@ss"}},
		// The overridden password is still a secret.
		{"postgres://u:first@h/db?password=sec%2Bond&sslpassword=k3y", []string{"first", "k3y", "sec%2Bond", "sec+ond"}},
		{"sqlite3:db.sqlite3?password=pw", []string{"pw"}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Secrets(); !slices.Equal(got, tt.want) {
				t.Errorf("Secrets() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPorts(t *testing.T) {
	tests := []struct {
		raw         string
		defaultPort int
		address     string
	}{
		{"postgres://db/app", 5432, "db:5432"},
		{"postgresql://db:6432/app", 5432, "db:6432"},
		{"mysql2:///app", 3306, "localhost:3306"},
		{"trilogy://[::1]/app", 3306, "[::1]:3306"},
		{"sqlite3:db.sqlite3", 0, "localhost:0"},
	}
	for _, tt := range tests {
		u, err := Parse(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.DefaultPort(); got != tt.defaultPort {
			t.Errorf("%s: DefaultPort() = %d, want %d", tt.raw, got, tt.defaultPort)
		}
		if got := u.Address("localhost"); got != tt.address {
			t.Errorf("%s: Address() = %q, want %q", tt.raw, got, tt.address)
		}
	}
}

// FuzzParse: whatever the input, Parse does not panic, its errors are
// one line and never carry the password, Redacted never does either, and
// reads back as the same URL.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"postgres://user:password@host:5432/db?sslmode=require",
		"mysql2://root:pw@[::1]:3306/app",
		"sqlite3:db/dev.sqlite3",
		"postgres://u:p@ss@h/db",
		"postgres://u:secret/db",
		"postgres://u:pa%2Fss@h/db?password=other&host=/tmp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pw, at := inputPassword(raw)
		// The same input with another password, to tell a password that
		// shows from text that merely looks like it.
		other := raw
		if pw != "" {
			other = raw[:at] + strings.Repeat(filler(pw), len(pw)) + raw[at+len(pw):]
		}
		u, err := Parse(raw)
		if err != nil {
			msg := err.Error()
			if !errors.Is(err, ErrInvalid) || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error %q is not one line wrapping ErrInvalid", msg)
			}
			if len(pw) >= 4 && strings.Contains(msg, pw) {
				if _, oerr := Parse(other); oerr == nil || !strings.Contains(oerr.Error(), pw) {
					t.Fatalf("error %q leaks password %q", msg, pw)
				}
			}
			return
		}
		red := u.Redacted()
		for _, secret := range []string{pw, unescape(pw)} {
			if len(secret) >= 4 && strings.Contains(red, secret) {
				if ou, oerr := Parse(other); oerr != nil || !strings.Contains(ou.Redacted(), secret) {
					t.Fatalf("Redacted() %q leaks %q", red, secret)
				}
			}
		}
		if u.Password != "" && !slices.Contains(u.Secrets(), u.Password) {
			t.Fatalf("Secrets() %q lacks the password", u.Secrets())
		}
		assertRoundTrip(t, u)
	})
}

// inputPassword is what a user would call the password in raw: after the
// first ':' of the authority, up to its last '@' (or, when the user forgot
// to escape a '/', '?' or '#', up to that), and where it starts.
func inputPassword(raw string) (string, int) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", 0
	}
	start := i + 3
	authority := raw[start:]
	if end := strings.LastIndex(authority, "@"); end >= 0 {
		authority = authority[:end]
	} else {
		return "", 0
	}
	colon := strings.Index(authority, ":")
	// A '[' before the first ':' opens an IPv6 host ([::1]:5432): no
	// user information, so no password.
	if colon < 0 || strings.ContainsAny(authority[:colon], "/?#[") {
		return "", 0
	}
	pw := authority[colon+1:]
	if i := strings.IndexAny(pw, "/?#"); i >= 0 {
		pw = pw[:i]
	}
	return pw, start + colon + 1
}

// filler is a letter that is not in pw.
func filler(pw string) string {
	for _, c := range "QZXJKVW" {
		if !strings.ContainsRune(pw, c) {
			return string(c)
		}
	}
	return "q"
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func TestSecretsOf(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
	}{
		{"postgres://u:p%40ss@h/db", []string{"p%40ss", "p@ss"}},
		{"postgres://u:top@secret@h/db", []string{"top@secret"}},
		{"mysql2://root:s3cret@h/db?password=other", []string{"other", "s3cret"}},
		{"not a url", nil},
		{"postgres://h/db", nil},
	}
	for _, tt := range tests {
		got := SecretsOf(tt.raw)
		for _, w := range tt.want {
			if !slices.Contains(got, w) {
				t.Errorf("SecretsOf(%q) = %q, missing %q", tt.raw, got, w)
			}
		}
		if tt.want == nil && len(got) > 0 {
			t.Errorf("SecretsOf(%q) = %q, want none", tt.raw, got)
		}
	}
}

func TestFromParts(t *testing.T) {
	u, err := FromParts(Parts{Adapter: PostgreSQL, Host: "db", Port: "5433", User: "app", Password: "p@ss:/?#%", DB: "app_production", Params: map[string]string{"sslmode": "require"}})
	if err != nil {
		t.Fatal(err)
	}
	want := URL{Adapter: PostgreSQL, User: "app", Password: "p@ss:/?#%", Host: "db", Port: 5433, Database: "app_production", Params: map[string]string{"sslmode": "require"}}
	if !reflect.DeepEqual(fields(u), want) {
		t.Errorf("FromParts() = %+v, want %+v", fields(u), want)
	}
	if again, err := Parse(strings.Replace(u.Redacted(), "xxxxx", escape(u.Password), 1)); err != nil || again.Password != u.Password {
		t.Errorf("the parts do not round-trip through a URL: %v", err)
	}
	for _, bad := range []Parts{
		{Adapter: PostgreSQL, Host: "db"},
		{Adapter: MySQL2, DB: "x", Port: "http"},
		{Adapter: "oracle", DB: "x"},
		{Adapter: PostgreSQL, DB: "x", Params: map[string]string{"sslmode": "disabled"}},
	} {
		if _, err := FromParts(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromParts(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}
