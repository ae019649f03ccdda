package notify

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/report"
)

// MaxText bounds the message text, in bytes of the final (escaped) text.
//
// Slack truncates a message's text past 40,000 characters. The output goes
// in the plain text rather than a section block, which Slack refuses past
// 3,000 characters: Rails prints its error at the end of a long output and
// 3,000 characters would often lose it. Counting bytes rather than
// characters keeps the bound whichever way Slack counts (UTF-16 units or
// code points); 2,000 below the limit leaves room for anything Slack adds.
const MaxText = 38000

// Budgets within the message, in escaped bytes.
const (
	maxHeading   = 200 // the environment, on the heading line
	maxField     = 500 // each attachment field
	maxMigFields = 2000
	markerRoom   = 100 // the omission marker
	// outputBudget is what the output may take of MaxText after the
	// heading, the fences and the omission marker.
	outputBudget = MaxText - maxHeading - 100 - markerRoom
)

// BuildMessage renders r as a Slack message in the familiar shape: the text
// starts with "DB migration result", then "*environment*: <env>", then the
// output in a code block; an attachment coloured by the outcome carries the
// details. Everything from r is escaped for Slack and bounded, so the text
// stays within MaxText whatever the output.
func BuildMessage(r report.Result, o Options) *slack.WebhookMessage {
	o = o.withDefaults()
	var text strings.Builder
	text.WriteString("DB migration result\n")
	text.WriteString("*environment*: " + escapeWithin(oneLine(r.Environment), maxHeading) + "\n")
	text.WriteString("```\n")
	text.WriteString(codeBlock(r.Output, outputBudget))
	text.WriteString("\n```")

	return &slack.WebhookMessage{
		Channel:   o.Channel,
		Username:  o.Username,
		IconEmoji: o.IconEmoji,
		Text:      text.String(),
		Attachments: []slack.Attachment{{
			Color:    color(r),
			Fallback: escapeWithin(fmt.Sprintf("DB migration %s: %s", oneLine(r.Environment), r.Describe()), maxField),
			Fields:   fields(r),
		}},
	}
}

// color is the attachment's bar: green when all went well, yellow when the
// run did no harm but needs a look, red when it failed.
func color(r report.Result) string {
	switch r.Severity() {
	case report.OK:
		return "good"
	case report.Warning:
		return "warning"
	}
	return "danger"
}

// fields are the attachment's details. The outcome comes first: people and
// tests alike read it there.
func fields(r report.Result) []slack.AttachmentField {
	f := []slack.AttachmentField{{Title: "Outcome", Value: escapeWithin(r.Describe(), maxField), Short: true}}
	add := func(title, value string, short bool) {
		if value != "" {
			f = append(f, slack.AttachmentField{Title: title, Value: escapeWithin(oneLine(value), maxField), Short: short})
		}
	}
	add("Duration", r.Duration.Round(time.Millisecond).String(), true)
	switch {
	case len(r.Migrations) > 0:
		lines := make([]string, len(r.Migrations))
		for i, m := range r.Migrations {
			lines[i] = fmt.Sprintf("%s %s (%s)", m.Version, m.Name, m.Action)
		}
		f = append(f, slack.AttachmentField{Title: "Migrations", Value: escapeWithin(strings.Join(lines, "\n"), maxMigFields)})
	case r.Outcome == report.Succeeded || r.Outcome == report.Skipped:
		add("Migrations", "none", true)
	}
	add("Host", r.Host, true)
	add("App", r.App, true)
	add("Revision", r.Revision, true)
	if r.Lock.Acquired && r.Lock.Waited >= time.Second {
		add("Lock wait", r.Lock.Waited.Round(time.Second).String(), true)
	}
	add("Lock lost", r.Lock.Lost, false)
	add("Error", r.Err, false)
	return f
}

// noOutput stands in the code block when there is nothing to show, e.g.
// when the lock or the database failed before the command ran: Slack shows
// an empty code block as stray backticks.
const noOutput = "(no output)"

// codeBlock makes output safe inside a ``` block and cuts it to at most
// budget bytes once escaped, keeping a third for the head and the rest for
// the tail (Rails prints its error last) with a marker between.
func codeBlock(output string, budget int) string {
	output = clean(output)
	if strings.TrimSpace(output) == "" {
		return noOutput
	}
	if cost(output) > budget {
		head := prefixWithin(output, budget/3)
		if i := strings.LastIndexByte(head, '\n'); i >= len(head)/2 {
			head = head[:i+1] // end on a whole line when one is near
		}
		tail := suffixWithin(output[len(head):], budget-cost(head)-markerRoom)
		if i := strings.IndexByte(tail, '\n'); i >= 0 && i < len(tail)/2 {
			tail = tail[i+1:]
		}
		marker := fmt.Sprintf("[... migrun: %d bytes omitted ...]\n", len(output)-len(head)-len(tail))
		if !strings.HasSuffix(head, "\n") {
			marker = "\n" + marker
		}
		output = head + marker + tail
	}
	return breakFences(escape(output))
}

// clean turns output into text Slack shows as it was printed: valid UTF-8,
// no terminal colour codes (Rails colours its SQL log), CRLF as LF, and no
// control characters but tabs and newlines (a NUL or a bell shows as �).
func clean(s string) string {
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
			b.WriteByte('\n') // a lone CR redraws the line: show the lines apart
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

// escape makes text safe for Slack: the three characters Slack requires
// escaped, so "<!channel>" pings nobody and "<http://x|y>" links nowhere,
// and no invalid UTF-8 or control characters.
func escape(s string) string {
	return slackEscaper.Replace(clean(s))
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeWithin escapes s cut to at most max bytes once escaped, marking the
// cut with an ellipsis.
func escapeWithin(s string, max int) string {
	s = clean(s)
	if cost(s) <= max {
		return escape(s)
	}
	return escape(prefixWithin(s, max-len("…"))) + "…"
}

// breakFences puts a zero-width space between backticks, so no three
// stand together to close the code block.
func breakFences(s string) string {
	if !strings.Contains(s, "``") {
		return s
	}
	var b strings.Builder
	prevTick := false
	for _, r := range s {
		if r == '`' && prevTick {
			b.WriteString(zwsp)
		}
		prevTick = r == '`'
		b.WriteRune(r)
	}
	return b.String()
}

const zwsp = "\u200b"

// runeCost is how many bytes one character of cleaned output can become in
// the message.
func runeCost(r rune) int {
	switch r {
	case '&':
		return len("&amp;")
	case '<', '>':
		return len("&lt;")
	case '`':
		return 1 + len(zwsp) // at most one zero-width space before it
	}
	return utf8.RuneLen(r)
}

func cost(s string) int {
	n := 0
	for _, r := range s {
		n += runeCost(r)
	}
	return n
}

// prefixWithin is the longest prefix of s costing at most budget.
func prefixWithin(s string, budget int) string {
	n := 0
	for i, r := range s {
		n += runeCost(r)
		if n > budget {
			return s[:i]
		}
	}
	return s
}

// suffixWithin is the longest suffix of s costing at most budget.
func suffixWithin(s string, budget int) string {
	n := 0
	i := len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		n += runeCost(r)
		if n > budget {
			break
		}
		i -= size
	}
	return s[i:]
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
