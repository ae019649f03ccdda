package notify

import (
	"fmt"
	"strings"

	"github.com/migrun/migrun/report"
)

// Policy says which results are worth a message.
type Policy string

// The policies MIGRUN_NOTIFY accepts.
const (
	Always   Policy = "always"
	Changes  Policy = "changes"  // migrations applied, the lock lost, or a failure
	Failures Policy = "failures" // a failure, or the lock lost
	Never    Policy = "never"
)

// ParsePolicy reads a MIGRUN_NOTIFY value, ignoring case and surrounding
// space.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(strings.TrimSpace(s))); p {
	case Always, Changes, Failures, Never:
		return p, nil
	}
	return "", fmt.Errorf("unknown notify policy %q (want always, changes, failures or never)", s)
}

// Wants reports whether r is to be posted under the policy.
//
// Changes leaves out successful runs that applied nothing (skipped, or
// nothing pending): with migrun as an init container in every Pod, all but
// one Pod find nothing to do. A lock lost while the command ran counts as a
// failure for both Changes and Failures, even if the command succeeded: the
// exclusion migrun promised did not hold, and someone should look.
func (p Policy) Wants(r report.Result) bool {
	trouble := r.Trouble()
	switch p {
	case Always:
		return true
	case Changes:
		return trouble || r.Applied()
	case Failures:
		return trouble
	}
	return false
}

// WantsRunning reports whether a notice that a migration is running is to
// be posted under the policy: with always and changes (a migration that
// runs long is applying something), not with failures (it has not failed)
// or never. Once a notice is posted, its result is posted whatever the
// policy says of it: see Notifier.Finished.
func (p Policy) WantsRunning() bool {
	return p == Always || p == Changes
}
