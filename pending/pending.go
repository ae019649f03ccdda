// Package pending is the gate of `migrun wait` and `migrun run
// --skip-if-current`: it tells whether Rails would find a migration to
// run, without booting Ruby, and says "cannot tell" whenever it cannot be
// sure Rails would find nothing to do. Only "current" opens the gate.
//
// Gate does it all: the app's files and configuration (or its manifest,
// Rails' own view written at build time) through package rails, then each
// database's schema_migrations.
package pending

import (
	"errors"
	"fmt"

	"github.com/migrun/migrun/dburl"
)

// ErrUnsupported: there is no way to read this database's schema_migrations.
var ErrUnsupported = errors.New("pending check not supported")

// supported refuses a database whose schema_migrations migrun cannot read.
func supported(name string, u *dburl.URL) error {
	if u == nil || (u.Adapter != dburl.PostgreSQL && !u.IsMySQL()) {
		adapter := "none"
		if u != nil {
			adapter = string(u.Adapter)
		}
		return fmt.Errorf("%w: database %s: adapter %s", ErrUnsupported, name, adapter)
	}
	return nil
}
