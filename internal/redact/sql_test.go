package redact

import "testing"

func TestSQLLiterals(t *testing.T) {
	tests := []struct {
		q     string
		mysql bool
		want  string
	}{
		{q: "ALTER ROLE app PASSWORD 's3cr''et'", want: "ALTER ROLE app PASSWORD '?'"},
		{q: "UPDATE users SET token = 'abc' WHERE id = 4", want: "UPDATE users SET token = '?' WHERE id = 4"},
		{q: `SELECT "password" FROM t WHERE x = E'a\'b' AND y = 'c'`, want: `SELECT "password" FROM t WHERE x = E'?' AND y = '?'`},
		{q: "SELECT $fn$ secret body $fn$, $$x$$, $1 FROM t", want: "SELECT '?', '?', $1 FROM t"},
		{q: "UPDATE t SET token = 'cut off by the 80 charac", want: "UPDATE t SET token = '?'"},
		{q: "CREATE INDEX CONCURRENTLY index_users_on_email ON users (email)", want: "CREATE INDEX CONCURRENTLY index_users_on_email ON users (email)"},
		{q: "SET PASSWORD = PASSWORD(\"hunter22\")", mysql: true, want: "SET PASSWORD = PASSWORD('?')"},
		{q: `UPDATE t SET a = 'x\'y', b = "z"`, mysql: true, want: `UPDATE t SET a = '?', b = '?'`},
		{q: "SELECT a$b, 'q'", want: "SELECT a$b, '?'"},
		{q: "", want: ""},
	}
	for _, tt := range tests {
		if got := SQLLiterals(tt.q, tt.mysql); got != tt.want {
			t.Errorf("SQLLiterals(%q, %t) = %q, want %q", tt.q, tt.mysql, got, tt.want)
		}
	}
}

func FuzzSQLLiterals(f *testing.F) {
	f.Add("UPDATE t SET a = 'secret' WHERE b = $x$y$x$", false)
	f.Fuzz(func(t *testing.T, q string, mysql bool) {
		// Masked text has nothing left to mask: every literal became '?'.
		once := SQLLiterals(q, mysql)
		if twice := SQLLiterals(once, mysql); twice != once {
			t.Fatalf("SQLLiterals(%q) = %q, masked again %q", q, once, twice)
		}
	})
}
