package pending

import (
	"errors"
	"testing"

	"github.com/migrun/migrun/dburl"
)

// TestSupported: schema_migrations is read on PostgreSQL and MySQL/MariaDB
// only; the database-facing behaviour is tested against real servers in
// db_test.go and integration/.
func TestSupported(t *testing.T) {
	tests := []struct {
		raw string
		ok  bool
	}{
		{"postgres://h/db", true},
		{"mysql2://h/db", true},
		{"trilogy://h/db", true},
		{"sqlite3:db/dev.sqlite3", false},
	}
	for _, tt := range tests {
		u, err := dburl.Parse(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		err = supported("primary", u)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrUnsupported)) {
			t.Errorf("supported(%s) = %v", tt.raw, err)
		}
	}
	if err := supported("primary", nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("supported(no URL) = %v", err)
	}
}
