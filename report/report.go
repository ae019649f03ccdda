// Package report defines the result of one migrun run: the value every
// notifier receives and the summary written to the termination log.
package report

import (
	"time"

	"github.com/migrun/migrun/rails"
)

// Outcome is how a run ended, in the words reports use.
type Outcome string

const (
	Succeeded   Outcome = "succeeded"    // the command exited 0
	Failed      Outcome = "failed"       // the command exited non-zero
	Signaled    Outcome = "terminated"   // the command died of a signal
	NotStarted  Outcome = "not started"  // the command could not be started (126/127)
	LockTimeout Outcome = "lock timeout" // the lock was not acquired in time
	Unreachable Outcome = "unreachable"  // the database could not be reached
	ConfigError Outcome = "config error" // bad configuration or usage
	Skipped     Outcome = "skipped"      // nothing pending, command not run (--skip-if-current)
)

// Result is one run of migrun, from configuration to exit.
type Result struct {
	Outcome     Outcome
	ExitStatus  int // what migrun exits with
	Command     []string
	ExitCode    int    // the command's exit code, -1 if signaled or not run
	Signal      string // e.g. "SIGTERM" when the command died of a signal
	Err         string // one line saying what went wrong before or around the command, already redacted
	Environment string // e.g. "production"
	Host        string // hostname or Pod name
	App         string
	Revision    string

	Started  time.Time
	Duration time.Duration // the whole run
	// Output is the command's captured output, bounded and redacted; when the
	// command printed nothing but whitespace it is the configured empty text.
	Output     string
	Omitted    int64 // output bytes left out of Output
	Migrations []rails.Migration

	Lock Lock
}

// Lock is what happened to the lock during the run.
type Lock struct {
	Mode     string        // session, transaction, none
	Name     string        // the lock name
	Waited   time.Duration // how long it took to acquire
	Timeout  time.Duration // the configured lock timeout
	Acquired bool
	Lost     string // non-empty when the lock connection was lost while held: why
}

// Applied reports whether any migration was applied or reverted.
func (r Result) Applied() bool { return len(r.Migrations) > 0 }

// OK reports whether the run succeeded (including skipped).
func (r Result) OK() bool { return r.ExitStatus == 0 }
