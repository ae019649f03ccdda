//go:build !linux

package dbconn

import "time"

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist:
// the keep-alive probes alone end a silent connection.
func setUserTimeout(uintptr, time.Duration) error { return nil }
