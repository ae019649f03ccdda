// Package report defines the result of one migrun run: the value every
// notifier receives; its headline, the summary written to the termination
// log and the versioned JSON document for other receivers; and the one
// table that turns how a run ended into an exit status and a severity.
package report

import (
	"time"

	"github.com/migrun/migrun/rails"
)

// Result is one run of migrun, from configuration to exit.
type Result struct {
	Outcome     Outcome
	Command     []string
	ExitCode    int    // the command's exit code; -1 when it did not exit by itself (signal, not run)
	Signal      int    // the signal that killed the command (or stopped migrun, for Stopped), 0 if none
	Err         string // one line saying what went wrong before or around the command, already redacted
	Environment string // e.g. "production"
	Host        string // hostname or Pod name
	Namespace   string // the Kubernetes namespace, when the Downward API provides it
	App         string
	Revision    string
	// Link is where to look further (Argo CD, logs): the expanded
	// LinkTemplate, or "".
	Link string

	Started  time.Time
	Duration time.Duration // the whole run
	// Output is the command's captured output, bounded and redacted; when the
	// command printed nothing but whitespace it is the configured empty text.
	Output     string
	Omitted    int64             // output bytes left out of Output
	Migrations []rails.Migration // the migrations that finished, in order
	// FailedMigration is the migration that was running when the command
	// failed or was stopped (rails.ParseRun's unfinished one); nil when
	// unknown or when the command succeeded.
	FailedMigration *rails.Migration
	// Pending is what was pending when the command started, as the caller
	// names it (versions, file or class names); empty when unknown. The
	// running notice shows it.
	Pending []string

	Lock Lock
	// Attempts are the runs of the command, in order; empty when it never
	// started. Today there is at most one.
	Attempts []Attempt
}

// Attempt is one run of the command.
type Attempt struct {
	Started  time.Time
	Duration time.Duration // zero while it runs
	ExitCode int           // -1 when it did not exit by itself
	Signal   int           // the signal that ended it, 0 if none
	Reason   string        // how it ended, in words, e.g. Result.Describe(); "" while it runs
	// LockTimeout: it failed because a statement gave up waiting for a
	// table lock (MIGRUN_DDL_LOCK_TIMEOUT, or the role's own); Reason then
	// says who blocked it and why it was or was not retried.
	LockTimeout bool
}

// Lock is what happened to the lock during the run.
type Lock struct {
	Mode     string        // session, transaction, none
	Name     string        // the lock name
	Waited   time.Duration // how long it took to acquire
	Timeout  time.Duration // the configured lock timeout
	Acquired bool
	Lost     string // non-empty when the lock was lost (or could not be confirmed) while held: why
	// CommandStopped: migrun stopped the command because the lock was lost.
	CommandStopped bool
}

// Applied reports whether any migration was applied or reverted.
func (r Result) Applied() bool { return len(r.Migrations) > 0 }

// OK reports whether the run did what was asked (including skipped).
func (r Result) OK() bool { return r.Severity() == OK }

// Trouble reports whether someone should look at the run: it failed, or it
// succeeded although the lock was lost while the command ran.
func (r Result) Trouble() bool { return r.Severity() != OK }
