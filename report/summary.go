package report

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxSummary is the most the kubelet reads from a termination log.
const MaxSummary = 4096

// Summary is the short text written to the termination log: how the run
// ended, the migrations applied and as much of the output's tail as fits in
// MaxSummary bytes, so `kubectl describe pod` shows it after the logs are gone.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrun: %s, exit status %d, in %s\n", r.Describe(), r.ExitStatus(), r.Duration.Round(time.Millisecond))
	if r.Err != "" {
		fmt.Fprintf(&b, "error: %s\n", r.Err)
	}
	if r.Lock.Lost != "" {
		fmt.Fprintf(&b, "lock lost while running: %s\n", r.Lock.Lost)
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

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// tailUTF8 keeps the last n bytes of s without splitting a character.
func tailUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
