// Package runner supervises the migration command: it streams the command's
// output live while keeping a bounded copy, forwards signals to it, makes sure
// it does not outlive migrun, and reports how it ended.
package runner

import (
	"errors"
	"io"
	"log/slog"
	"syscall"
	"time"
)

// Errors from Start that callers map to exit statuses 127 and 126.
var (
	ErrNotFound      = errors.New("command not found")
	ErrNotExecutable = errors.New("command not executable")
)

// Options tune how a command is supervised. The zero value is usable.
type Options struct {
	// Stdout receives the command's output live, stdout and stderr
	// together in the order they were written; nil discards it. A write
	// error (a closed pipe) stops the live copy, never the command.
	Stdout io.Writer
	// SeparateStderr gives the command's stderr a pipe of its own, copied
	// live to Stderr, so the live copies keep the two streams apart. The
	// captured Result.Output then interleaves them in the order migrun read
	// them, which can differ from the order they were written. At most one
	// Write runs at a time, so Stdout and Stderr may be the same writer.
	SeparateStderr bool
	Stderr         io.Writer
	// CaptureHead and CaptureTail bound the captured copy: the first and the
	// last so many bytes are kept. 0 means 64 KiB each.
	CaptureHead, CaptureTail int
	// ReapOrphans makes the runner reap every child that is reparented to
	// migrun (needed when migrun is PID 1) without losing the command's status.
	// Once set, orphans are reaped for the rest of migrun's life, and any
	// child not started by this package may have its status reaped too.
	ReapOrphans bool
	// DrainTimeout bounds how long output is read after the command exited,
	// when a grandchild still holds the pipes open. 0 means 2s.
	DrainTimeout time.Duration
	// Logger receives the runner's own few lines (a lost status, a slow
	// drain, a stop that needed SIGKILL); nil discards them.
	Logger *slog.Logger
}

// Result is how the command ended.
type Result struct {
	ExitCode int            // the exit code; -1 when the command died of a signal
	Signal   syscall.Signal // the signal that killed the command, 0 if it exited
	Duration time.Duration
	// Output is stdout and stderr as written (see SeparateStderr), bounded: when
	// more was written than fits, the head and the tail are kept with a marker
	// line between them saying how much was left out.
	Output  string
	Omitted int64 // bytes left out of Output
	MaxRSS  int64 // the command's peak resident set, in bytes
	// Err is set when the command's exit status was lost (another wait4 in
	// migrun took it): ExitCode is then -1 and Signal 0.
	Err error
}
