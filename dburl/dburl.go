// Package dburl parses database URLs the way Rails reads DATABASE_URL.
//
// Errors and String never contain the password: url.Parse puts the whole URL,
// password included, into its errors, so this package never returns them as is.
package dburl

import "errors"

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
