package report

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CleanOutput turns captured output into the text it showed on a terminal:
// valid UTF-8, no terminal escape sequences (Rails colours its SQL log),
// CRLF as LF, a lone CR (which redraws a line) as LF, and no control
// characters but tabs and newlines (a NUL or a bell becomes U+FFFD).
func CleanOutput(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\x1b':
			i += escapeSequenceLen(s[i:]) - 1
		case c == '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				continue
			}
			b.WriteByte('\n')
		case c == '\t' || c == '\n':
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteString("\uFFFD")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f }

// escapeSequenceLen is the length of the terminal escape sequence at the
// start of s (which starts with ESC): a CSI sequence such as "\x1b[1;36m",
// or else ESC and the byte after it.
func escapeSequenceLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	if s[1] != '[' {
		if s[1] < 0x20 || s[1] >= 0x7f {
			return 1 // not a sequence: drop the ESC alone
		}
		return 2
	}
	for i := 2; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x40 && c <= 0x7e:
			return i + 1 // the final byte
		case c < 0x20 || c > 0x7e:
			return i // malformed: keep what follows
		}
	}
	return len(s)
}

// oneLine is s cleaned, on one line with single spaces, cut to at most max
// bytes with an ellipsis: a value fit for a headline.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(CleanOutput(s)), " ")
	if len(s) <= max {
		return s
	}
	return truncateUTF8(s, max-len("…")) + "…"
}

// boundOutput cuts cleaned output to at most max bytes (CutMiddle by
// bytes); it returns the bytes it left out.
func boundOutput(s string, max int) (string, int) {
	return CutMiddle(s, max, utf8.RuneLen)
}

// CutMiddle cuts s, when it costs more than budget (each character costing
// runeCost), to a head of about a third of the budget and a tail (Rails
// prints its error last), each ending or starting on a line break when one
// is near, with a marker line between saying how many bytes were left out.
// It returns the result and the bytes left out. The marker's own cost is
// kept within a small allowance.
func CutMiddle(s string, budget int, runeCost func(rune) int) (string, int) {
	cost := func(s string) int {
		n := 0
		for _, r := range s {
			n += runeCost(r)
		}
		return n
	}
	if cost(s) <= budget {
		return s, 0
	}
	const markerRoom = 64
	head := PrefixCosting(s, budget/3, runeCost)
	if i := strings.LastIndexByte(head, '\n'); i >= len(head)/2 {
		head = head[:i+1] // end on a whole line when one is near
	}
	tail := suffixCosting(s[len(head):], budget-cost(head)-markerRoom, runeCost)
	if i := strings.IndexByte(tail, '\n'); i >= 0 && i < len(tail)/2 {
		tail = tail[i+1:]
	}
	omitted := len(s) - len(head) - len(tail)
	marker := fmt.Sprintf("[... migrun: %d bytes omitted ...]\n", omitted)
	if !strings.HasSuffix(head, "\n") {
		marker = "\n" + marker
	}
	return head + marker + tail, omitted
}

// PrefixCosting is the longest prefix of s costing at most budget, each
// character costing runeCost.
func PrefixCosting(s string, budget int, runeCost func(rune) int) string {
	n := 0
	for i, r := range s {
		if n += runeCost(r); n > budget {
			return s[:i]
		}
	}
	return s
}

// suffixCosting is the longest suffix of s costing at most budget.
func suffixCosting(s string, budget int, runeCost func(rune) int) string {
	n, i := 0, len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if n += runeCost(r); n > budget {
			break
		}
		i -= size
	}
	return s[i:]
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string { return PrefixCosting(s, n, utf8.RuneLen) }

// tailUTF8 keeps the last n bytes of s without splitting a character.
func tailUTF8(s string, n int) string { return suffixCosting(s, n, utf8.RuneLen) }
