package pending

import (
	"errors"
	"testing"
	"time"

	"github.com/migrun/migrun/dburl"
)

// The database-facing behaviour (missing table, multi-database, waiting)
// is tested against real servers in integration/wait_test.go.
func TestNewRejectsWhatItCannotRead(t *testing.T) {
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
		_, err = New(Database{Name: "primary", URL: u}, time.Second, nil)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrUnsupported)) {
			t.Errorf("New(%s) = %v", tt.raw, err)
		}
	}
	if _, err := New(Database{Name: "primary"}, time.Second, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("New(no URL) = %v", err)
	}
}
