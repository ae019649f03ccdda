package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/migrun/migrun/rails"
)

// MaxSummary is the most the kubelet reads from a termination log.
const MaxSummary = 4096

// Summary is the short text written to the termination log: the headline,
// how the run ended, the migrations applied and the one that failed, and
// as much of the output's tail as fits in MaxSummary bytes, so `kubectl
// describe pod` shows it after the logs are gone.
func (r Result) Summary() string {
	var b strings.Builder
	b.WriteString(r.Headline() + "\n")
	fmt.Fprintf(&b, "migrun: %s, exit status %d, in %s\n", r.Describe(), r.ExitStatus(), r.Duration.Round(time.Millisecond))
	if r.Err != "" {
		fmt.Fprintf(&b, "error: %s\n", r.Err)
	}
	if r.Lock.Lost != "" {
		when := "while running"
		if len(r.Attempts) == 0 {
			when = "before the command started"
		}
		fmt.Fprintf(&b, "lock lost %s: %s\n", when, r.Lock.Lost)
		if r.Lock.CommandStopped {
			b.WriteString("command stopped: another runner could take the lock\n")
		}
	}
	if len(r.Migrations) > 0 {
		b.WriteString("migrations:")
		for _, m := range r.Migrations {
			fmt.Fprintf(&b, " %s %s %s;", m.Version, m.Name, m.Action)
		}
		b.WriteString("\n")
	}
	if m := r.FailedMigration; m != nil {
		fmt.Fprintf(&b, "failed migration: %s\n", migrationWhile(*m))
	}
	for _, line := range r.AttemptLines() {
		b.WriteString(line + "\n")
	}
	if r.Link != "" {
		fmt.Fprintf(&b, "link: %s\n", r.Link)
	}
	head := b.String()
	if len(head) > MaxSummary {
		return truncateUTF8(head, MaxSummary)
	}
	if r.Output == "" {
		return head
	}
	const label = "output (tail):\n"
	room := MaxSummary - len(head) - len(label)
	if room <= 0 {
		return head
	}
	return head + label + tailUTF8(r.Output, room)
}

// AttemptLines say how each attempt ended, when there is more to say than
// the outcome: several attempts (MIGRUN_RETRIES), or one that failed on
// the DDL lock timeout (who blocked it, why it was not retried).
func (r Result) AttemptLines() []string {
	worth := len(r.Attempts) > 1
	for _, a := range r.Attempts {
		worth = worth || a.LockTimeout
	}
	if !worth {
		return nil
	}
	lines := []string{fmt.Sprintf("attempts: %d", len(r.Attempts))}
	for i, a := range r.Attempts {
		lines = append(lines, fmt.Sprintf("attempt %d: %s", i+1, a.Reason))
	}
	return lines
}

// migrationWhile names a migration that did not finish, and what it was
// doing when known: "20240102000000 AddFlag (while migrating)".
func migrationWhile(m rails.Migration) string {
	s := m.Version + " " + m.Name
	if m.Action != "" {
		s += " (while " + m.Action + ")"
	}
	return s
}
