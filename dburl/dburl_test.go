package dburl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		raw  string
		want URL
	}{
		{"postgres://localhost/foo", URL{Adapter: PostgreSQL, Host: "localhost", Database: "foo"}},
		{"postgresql://user:p%40ss@db:5433/app_production?sslmode=require&pool=5",
			URL{Adapter: PostgreSQL, User: "user", Password: "p@ss", Host: "db", Port: 5433, Database: "app_production", Params: map[string]string{"sslmode": "require", "pool": "5"}}},
		{"postgres:///app?host=/var/run/postgresql", URL{Adapter: PostgreSQL, Database: "app", Params: map[string]string{"host": "/var/run/postgresql"}}},
		{"postgres://u@[::1]:5432/db", URL{Adapter: PostgreSQL, User: "u", Host: "::1", Port: 5432, Database: "db"}},
		{"postgres://u:@h/db", URL{Adapter: PostgreSQL, User: "u", Host: "h", Database: "db"}},
		{"postgres://h/my%20db?application_name=a%26b", URL{Adapter: PostgreSQL, Host: "h", Database: "my db", Params: map[string]string{"application_name": "a&b"}}},
		{"mysql2://root@127.0.0.1:3306/app?encoding=utf8mb4", URL{Adapter: MySQL2, User: "root", Host: "127.0.0.1", Port: 3306, Database: "app", Params: map[string]string{"encoding": "utf8mb4"}}},
		{"mysql://u:pw@db/app", URL{Adapter: MySQL2, User: "u", Password: "pw", Host: "db", Database: "app"}},
		{"trilogy://u:pw@db:3307/app", URL{Adapter: Trilogy, User: "u", Password: "pw", Host: "db", Port: 3307, Database: "app"}},
		{"sqlite3:db/development.sqlite3", URL{Adapter: SQLite3, Database: "db/development.sqlite3"}},
		{"sqlite3:///abs/path.sqlite3", URL{Adapter: SQLite3, Database: "/abs/path.sqlite3"}},
		{"sqlite:relative.db?timeout=5000", URL{Adapter: SQLite3, Database: "relative.db", Params: map[string]string{"timeout": "5000"}}},
		{"  POSTGRES://h/db  ", URL{Adapter: PostgreSQL, Host: "h", Database: "db"}},
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
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Parse() = %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const pw = "Sup3rSecret"
	tests := []struct{ raw, want string }{
		{"", "empty"},
		{"oracle://u:" + pw + "@h/db", `unsupported scheme "oracle"`},
		{"localhost/db", "no scheme"},
		{"postgres://u:" + pw + "@h", "no database name"},
		{"postgres://u:" + pw + "@h/", "no database name"},
		{"postgres://u:p@" + pw + "@h/db", "unescaped '@'"},
		{"postgres://u:" + pw + "@h:99999/db", "bad port"},
		{"postgres://u:" + pw + "/db", "bad port"},
		{"postgres://u:" + pw + "%zz@h/db", "percent-escape in the password"},
		{"postgres:u:" + pw + "@h/db", "must start with postgres://"},
		{"sqlite3::memory:", ":memory:"},
		{"sqlite3:", "no file path"},
		{"mysql2://u:" + pw + "@[::1/db", "unclosed"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := Parse(tt.raw)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tt.raw)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error = %q, want ErrInvalid containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error leaks the password or is not one line: %q", err)
			}
		})
	}
}

func TestRedactedAndSecrets(t *testing.T) {
	u, err := Parse("postgres://app:s3cr%2Ft@db:5432/app?sslmode=require&password=other")
	if err != nil {
		t.Fatal(err)
	}
	got := u.Redacted()
	if want := "postgresql://app:xxxxx@db:5432/app?password=xxxxx&sslmode=require"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
	if u.String() != got {
		t.Errorf("String() differs from Redacted()")
	}
	secrets := u.Secrets()
	if len(secrets) != 2 || !strings.Contains(strings.Join(secrets, " "), "s3cr/t") || !strings.Contains(strings.Join(secrets, " "), "other") {
		t.Errorf("Secrets() = %q", secrets)
	}
	if u.DefaultPort() != 5432 || u.Address("localhost") != "db:5432" {
		t.Errorf("DefaultPort %d Address %q", u.DefaultPort(), u.Address("localhost"))
	}
	lite, _ := Parse("sqlite3:db/dev.sqlite3")
	if lite.Redacted() != "sqlite3:db/dev.sqlite3" || len(lite.Secrets()) != 0 {
		t.Errorf("sqlite3 Redacted %q", lite.Redacted())
	}
}

// FuzzParse: whatever the input, Parse does not panic, its errors never
// carry the password, and Redacted never does either.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"postgres://user:password@host:5432/db?sslmode=require",
		"mysql2://root:pw@[::1]:3306/app",
		"sqlite3:db/dev.sqlite3",
		"postgres://u:p@ss@h/db",
		"postgres://u:secret/db",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pw, at := passwordIn(raw)
		// The same URL with another password of the same length.
		withOther := raw[:at] + strings.Repeat("\x01", len(pw)) + raw[at+len(pw):]
		u, err := Parse(raw)
		if err != nil {
			// A leak is the password showing up because it was in the input:
			// the same URL with another password must not show it too (the
			// fixed text of a message may contain anything short).
			if len(pw) >= 4 && strings.Contains(err.Error(), pw) {
				_, other := Parse(withOther)
				if other == nil || !strings.Contains(other.Error(), pw) {
					t.Fatalf("error %q leaks password %q", err, pw)
				}
			}
			return
		}
		if len(pw) >= 4 && u.Password != "" && strings.Contains(u.Redacted(), pw) {
			other, err := Parse(withOther)
			if err != nil || !strings.Contains(other.Redacted(), pw) {
				t.Fatalf("Redacted() %q leaks %q", u.Redacted(), pw)
			}
		}
	})
}

// passwordIn finds the text between the first "://user:" and the following
// "@" or "/" (what a user would consider the password) and where it starts.
func passwordIn(raw string) (string, int) {
	scheme := strings.Index(raw, "://")
	if scheme < 0 {
		return "", 0
	}
	colon := strings.Index(raw[scheme+3:], ":")
	if colon < 0 {
		return "", 0
	}
	at := scheme + 3 + colon + 1
	pw := raw[at:]
	if i := strings.IndexAny(pw, "@/?#"); i >= 0 {
		pw = pw[:i]
	}
	return pw, at
}
