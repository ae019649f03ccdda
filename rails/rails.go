// Package rails holds what migrun knows about Rails itself: the lines
// `rails db:migrate` prints for each migration.
package rails

import "time"

// Migration is one migration Rails reported.
type Migration struct {
	Version  string        // e.g. "20240101000000"
	Name     string        // e.g. "CreateUsers"
	Action   string        // "migrated" or "reverted"
	Duration time.Duration // as Rails reported it
}
