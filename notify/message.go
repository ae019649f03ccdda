package notify

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/report"
)

// MaxText bounds the message text, in characters. Slack truncates a
// message's text past 40,000 characters; staying well below leaves room
// for the heading and any escaping Slack does on its side. (Section blocks
// would cap at 3,000, which is why the output goes in the text.)
const MaxText = 38000

// outputBudget is what the output may take of MaxText after the heading,
// the fences and the omission marker.
const outputBudget = MaxText - 2000

// BuildMessage renders r as a Slack message in the familiar shape: the text
// starts with "DB migration result", then "*environment*: <env>", then the
// output in a code block; an attachment coloured by the outcome carries the
// details.
func BuildMessage(r report.Result, o Options) *slack.WebhookMessage {
	o = o.withDefaults()
	var text strings.Builder
	text.WriteString("DB migration result\n")
	fmt.Fprintf(&text, "*environment*: %s\n", escape(oneLine(r.Environment)))
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
			Fallback: escape(fmt.Sprintf("DB migration %s: %s", oneLine(r.Environment), r.Describe())),
			Fields:   fields(r),
		}},
	}
}

func color(r report.Result) string {
	switch {
	case r.Outcome == report.LockTimeout || (r.OK() && r.Lock.Lost != ""):
		return "warning"
	case r.OK():
		return "good"
	}
	return "danger"
}

func fields(r report.Result) []slack.AttachmentField {
	f := []slack.AttachmentField{{Title: "Outcome", Value: escape(r.Describe()), Short: true}}
	add := func(title, value string, short bool) {
		if value != "" {
			f = append(f, slack.AttachmentField{Title: title, Value: escape(oneLine(value)), Short: short})
		}
	}
	add("Duration", r.Duration.Round(time.Millisecond).String(), true)
	if len(r.Migrations) > 0 {
		lines := make([]string, len(r.Migrations))
		for i, m := range r.Migrations {
			lines[i] = fmt.Sprintf("%s %s (%s)", m.Version, m.Name, m.Action)
		}
		f = append(f, slack.AttachmentField{Title: "Migrations", Value: escape(truncateRunes(strings.Join(lines, "\n"), 1500)), Short: false})
	} else if r.Outcome == report.Succeeded || r.Outcome == report.Skipped {
		add("Migrations", "none pending", true)
	}
	add("Host", r.Host, true)
	add("App", r.App, true)
	add("Revision", r.Revision, true)
	if r.Lock.Acquired && r.Lock.Waited >= time.Second {
		add("Lock wait", r.Lock.Waited.Round(time.Second).String(), true)
	}
	add("Lock lost", r.Lock.Lost, false)
	add("Error", truncateRunes(r.Err, 500), false)
	return f
}

// escape makes text safe for Slack's mrkdwn: the three characters Slack
// requires escaped, so "<!channel>" in output pings nobody, and no invalid
// UTF-8 or NUL bytes.
func escape(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// codeBlock escapes output for a ``` block and cuts it to at most budget
// characters, keeping the head and, larger, the tail (Rails prints its
// error last) with a marker between. A run of backticks in the output is
// broken up so it cannot close the block early.
func codeBlock(output string, budget int) string {
	output = strings.ToValidUTF8(output, "\uFFFD")
	output = strings.ReplaceAll(output, "\x00", "\uFFFD")
	if cost(output) > budget {
		headBudget := budget / 3
		head := prefixWithin(output, headBudget)
		tail := suffixWithin(output[len(head):], budget-headBudget-100)
		omitted := utf8.RuneCountInString(output) - utf8.RuneCountInString(head) - utf8.RuneCountInString(tail)
		output = head + fmt.Sprintf("\n[... %d characters omitted ...]\n", omitted) + tail
	}
	return breakFences(escape(output))
}

// breakFences puts a zero-width space between backticks, so no three
// stand together.
func breakFences(s string) string {
	if !strings.Contains(s, "``") {
		return s
	}
	var b strings.Builder
	prevTick := false
	for _, r := range s {
		if r == '`' && prevTick {
			b.WriteRune('\u200b')
		}
		prevTick = r == '`'
		b.WriteRune(r)
	}
	return b.String()
}

// runeCost is what one character of output can become in the message.
func runeCost(r rune) int {
	switch r {
	case '&':
		return len("&amp;")
	case '<', '>':
		return len("&lt;")
	case '`':
		return 2 // the backtick and, at most, one zero-width space
	}
	return 1
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

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
