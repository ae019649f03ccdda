package dburl

import (
	"slices"
	"strings"
)

// railsParams are the configuration keys Rails itself reads from a URL's
// query, whatever the adapter (activerecord's connection handling, pool and
// migration settings).
var railsParams = []string{
	"adapter", "pool", "timeout", "checkout_timeout", "reaping_frequency", "idle_timeout",
	"encoding", "reconnect", "prepared_statements", "advisory_locks", "statement_limit",
	"database_tasks", "replica", "migrations_paths", "schema_dump", "schema_cache_path",
	"username", "password", "host", "port", "database", "query_cache", "use_metadata_table",
}

// adapterParams are the keys each adapter (and its driver) reads: for
// PostgreSQL Rails' own and every libpq connection parameter (Rails passes
// those to libpq); for mysql2 and trilogy their client options; nil for
// an adapter it does not know.
func adapterParams(a Adapter) []string {
	switch a {
	case PostgreSQL:
		return postgresParams
	case MySQL2:
		return mysql2Params
	case Trilogy:
		return trilogyParams
	case SQLite3:
		return sqlite3Params
	}
	return nil
}

var (
	postgresParams = []string{
		"schema_search_path", "schema_order", "min_messages", "variables", "insert_returning", "sslmode", "sslcompression",
		"sslcert", "sslkey", "sslpassword", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "sslnegotiation",
		"ssl_min_protocol_version", "ssl_max_protocol_version", "requiressl", "requirepeer",
		"gssencmode", "gssdelegation", "krbsrvname", "gsslib", "channel_binding", "require_auth",
		"hostaddr", "dbname", "user", "passfile", "service", "connect_timeout", "client_encoding",
		"options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "tcp_user_timeout", "target_session_attrs",
		"load_balance_hosts", "replication",
	}
	mysql2Params = []string{
		"socket", "flags", "collation", "read_timeout", "write_timeout", "connect_timeout",
		"local_infile", "secure_auth", "ssl_mode", "sslkey", "sslcert", "sslca", "sslcapath",
		"sslcipher", "sslverify", "default_file", "default_group", "init_command", "wait_timeout",
		"variables", "strict", "automatic_close", "enable_cleartext_plugin", "default_auth",
		"get_server_public_key", "connect_attrs",
	}
	trilogyParams = []string{
		"socket", "ssl", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_cipher",
		"tls_min_version", "tls_max_version", "read_timeout", "write_timeout", "connect_timeout",
		"wait_timeout", "variables", "strict", "collation", "found_rows", "multi_statement",
		"local_infile", "init_command",
	}
	sqlite3Params = []string{"mode", "cache", "flags", "readonly", "default_transaction_mode", "extensions", "statement_limit"}
)

// enumParam is the words parameter key's value must be one of, for
// adapter a; ok is false for a parameter that takes any value.
func enumParam(a Adapter, key string) (words []string, ok bool) {
	switch {
	case a == PostgreSQL && key == "sslmode":
		return []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}, true
	case a == PostgreSQL && key == "gssencmode":
		return []string{"disable", "prefer", "require"}, true
	case a == PostgreSQL && key == "target_session_attrs":
		return []string{"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}, true
	case a == MySQL2 && key == "ssl_mode":
		return []string{"disabled", "preferred", "required", "verify_ca", "verify_identity"}, true
	}
	return nil, false
}

// checkParams refuses a query parameter that neither Rails nor the
// adapter's driver reads (a typo, or one meant for another adapter), and a
// keyword parameter with a value the driver does not know, which the
// driver would otherwise reject only when connecting.
func (u *URL) checkParams() error {
	for k, v := range u.Params {
		if !slices.Contains(railsParams, k) && !slices.Contains(adapterParams(u.Adapter), k) {
			return invalid("unknown query parameter %q for %s (neither Rails nor its driver reads it: remove it, or check its spelling)", truncate(k, 32), u.Adapter)
		}
		if words, ok := enumParam(u.Adapter, k); ok {
			// MySQL's ssl_mode is case-insensitive, libpq's sslmode is not.
			got := v
			if u.Adapter != PostgreSQL {
				got = strings.ToLower(v)
			}
			if !slices.Contains(words, got) {
				return invalid("%s=%q is not one of %s", k, truncate(v, 32), strings.Join(words, ", "))
			}
		}
	}
	return nil
}
