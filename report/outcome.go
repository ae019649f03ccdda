package report

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Outcome is how a run ended, in the words reports use.
type Outcome string

// The outcomes of `migrun run`, `migrun wait` and `migrun status`.
const (
	Succeeded     Outcome = "succeeded"         // the command exited 0
	Skipped       Outcome = "skipped"           // nothing pending: the command was not run (--skip-if-current)
	Failed        Outcome = "failed"            // the command exited non-zero
	Killed        Outcome = "killed"            // the command died of a signal
	NotFound      Outcome = "not found"         // the command does not exist
	NotExecutable Outcome = "not executable"    // the command cannot be executed
	Stopped       Outcome = "stopped"           // migrun was told to stop (a signal) before the command ran
	LockTimeout   Outcome = "lock timeout"      // the lock was not acquired in time
	LockLost      Outcome = "lock lost"         // the lock was lost while the command ran, so migrun stopped the command
	Unreachable   Outcome = "unreachable"       // the database could not be reached, or refused us
	ConfigError   Outcome = "config error"      // bad configuration or usage
	InternalError Outcome = "internal error"    // migrun itself failed
	Current       Outcome = "current"           // wait: no migration pending
	StillPending  Outcome = "pending"           // wait: migrations still pending (or migrun could not tell) at the timeout
	Healthy       Outcome = "healthy"           // status: all is well
	Unhealthy     Outcome = "unhealthy"         // status: something is wrong (unreachable, pending, a notification test failed)
	NotifyTest    Outcome = "notification test" // status --notify-test: the message it posts
)

// Exit statuses besides the command's own (sysexits.h where one fits).
const (
	ExitTrouble       = 1   // status: something is wrong
	ExitUsage         = 64  // EX_USAGE: bad flags, variables or URL
	ExitUnavailable   = 69  // EX_UNAVAILABLE: database unreachable or refused us
	ExitSoftware      = 70  // EX_SOFTWARE: migrun itself failed
	ExitTempFail      = 75  // EX_TEMPFAIL: lock not acquired in time or lost; migrations still pending
	ExitNotExecutable = 126 // as shells and tini
	ExitNotFound      = 127
	exitSignalBase    = 128 // 128+N: died of signal N
)

// Severity is how a run went, for people: it picks the log level, the
// Slack colour and whether a notification policy counts it as trouble.
type Severity int

const (
	OK      Severity = iota // all went well
	Warning                 // no harm done, but someone should look (lock timeout, lock lost after success)
	Failure                 // the migration failed or could not run
)

// String is the severity's word in the result document: ok, warning, failure.
func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Warning:
		return "warning"
	}
	return "failure"
}

// outcomeInfo is what an outcome means. status -1: the command's own.
type outcomeInfo struct {
	status   int
	severity Severity
}

// outcomes is the one table of what each outcome exits with and how bad it is.
var outcomes = map[Outcome]outcomeInfo{
	Succeeded:     {0, OK},
	Skipped:       {0, OK},
	Current:       {0, OK},
	Failed:        {-1, Failure},
	Killed:        {-1, Failure},
	Stopped:       {-1, Failure},
	NotFound:      {ExitNotFound, Failure},
	NotExecutable: {ExitNotExecutable, Failure},
	LockTimeout:   {ExitTempFail, Warning},
	StillPending:  {ExitTempFail, Warning},
	LockLost:      {ExitTempFail, Failure},
	Unreachable:   {ExitUnavailable, Failure},
	ConfigError:   {ExitUsage, Failure},
	InternalError: {ExitSoftware, Failure},
	Healthy:       {0, OK},
	Unhealthy:     {ExitTrouble, Failure},
	NotifyTest:    {0, OK},
}

// ExitStatus is what migrun exits with after this run: the one place an exit
// status is decided.
func (r Result) ExitStatus() int {
	info, ok := outcomes[r.Outcome]
	if !ok {
		return ExitSoftware
	}
	if info.status >= 0 {
		return info.status
	}
	if r.Signal > 0 {
		return exitSignalBase + r.Signal
	}
	if r.Outcome == Failed && r.ExitCode > 0 {
		return r.ExitCode
	}
	return ExitSoftware // a failure without a status: never exit 0 for it
}

// Severity says how the run went. A command that succeeded while the lock
// was lost (MIGRUN_ON_LOCK_LOST=continue) is a warning: the exclusion migrun
// promised did not hold.
func (r Result) Severity() Severity {
	info, ok := outcomes[r.Outcome]
	if !ok {
		return Failure
	}
	if info.severity == OK && r.Lock.Lost != "" {
		return Warning
	}
	return info.severity
}

// Describe says how the run ended in a few words, e.g. "failed (exit 1)".
func (r Result) Describe() string {
	switch r.Outcome {
	case Failed:
		return fmt.Sprintf("failed (exit %d)", r.ExitCode)
	case Killed:
		return "killed by " + SignalName(r.Signal)
	case Stopped:
		return "stopped by " + SignalName(r.Signal) + " before the command ran"
	case Skipped:
		return "skipped (nothing pending)"
	case LockTimeout:
		return "lock not acquired in " + shortDuration(r.Lock.Timeout)
	case LockLost:
		return "lock lost; command stopped"
	case Unreachable:
		return "database unreachable"
	case NotFound:
		return "command not found"
	case NotExecutable:
		return "command not executable"
	case ConfigError:
		return "configuration error"
	case InternalError:
		return "internal error"
	case StillPending:
		return "migrations still pending"
	case Current:
		return "no migration pending"
	case Healthy:
		return "all is well"
	case Unhealthy:
		return "something is wrong"
	case NotifyTest:
		return "notification test from migrun status"
	case "":
		return "unknown outcome"
	}
	return string(r.Outcome)
}

// shortDuration writes d without trailing zero units: 30m, 1h30m, 1m30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// SignalName names signal n, e.g. "SIGTERM".
func SignalName(n int) string {
	if name := unix.SignalName(syscall.Signal(n)); name != "" {
		return name
	}
	return fmt.Sprintf("signal %d", n)
}
