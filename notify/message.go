package notify

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/rails"
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
	maxHeadline   = 600 // the headline, the message's first line
	maxResultLine = 700 // the second line: "DB migration result: …"
	maxLinkLabel  = 200
	// maxLinkLine holds any link report lets through: MaxLink bytes, each
	// at most 5 once escaped (&amp;), and its label.
	maxLinkLine  = 5*report.MaxLink + maxLinkLabel + len("<|>")
	maxField     = 500 // each attachment field
	maxMigFields = 2000
	fences       = "```\n" + "\n```"
	// outputBudget is the least room the output has: what MaxText leaves
	// after the longest lines above it and the fences. The output takes
	// what the actual lines leave, usually far more.
	outputBudget = MaxText - maxHeadline - maxResultLine - maxLinkLine - len("\n\n\n") - len(fences)
)

// searchWords are in every result message: teams search Slack for them.
const searchWords = "DB migration result"

// BuildMessage renders r as a Slack message. The text's first line is the
// headline (what happened, where: what a phone notification and the
// channel list show), the second "DB migration result: " with the outcome
// and the migration that failed, then the link, if any, and the output in a
// code block; an attachment coloured by the outcome carries the details.
// Everything from r is escaped for Slack and bounded, so the text stays
// within MaxText whatever the output.
func BuildMessage(r report.Result, o Options) *slack.WebhookMessage {
	o = o.withDefaults()
	var text strings.Builder
	text.WriteString(escapeWithin(r.Headline(), maxHeadline) + "\n")
	result := searchWords + ": " + r.Describe()
	if m := r.FailedMigration; m != nil {
		result += " at " + m.Version + " " + m.Name
	}
	text.WriteString(escapeWithin(oneLine(result), maxResultLine) + "\n")
	if link := slackLink(r.Link); link != "" {
		text.WriteString(link + "\n")
	}
	budget := MaxText - text.Len() - len(fences)
	text.WriteString("```\n")
	text.WriteString(codeBlock(r.Output, budget))
	text.WriteString("\n```")

	return message(o, text.String(), color(r), r.Headline(), fields(r))
}

// message is a Slack message as migrun posts them: the text, and one
// attachment whose bar and fields carry the details.
func message(o Options, text, color, fallback string, fields []slack.AttachmentField) *slack.WebhookMessage {
	return &slack.WebhookMessage{
		Channel:   o.Channel,
		Username:  o.Username,
		IconEmoji: o.IconEmoji,
		Text:      text,
		Attachments: []slack.Attachment{{
			Color:    color,
			Fallback: escapeWithin(fallback, maxField),
			Fields:   fields,
		}},
	}
}

// runningColor is the running notice's bar: Slack's blue, neither good
// nor bad.
const runningColor = "#439FE0"

// buildRunningMessage renders the notice that a migration is running: the
// running headline, since when (in each reader's time zone) and on which
// host, the link, and what is pending.
func buildRunningMessage(r report.Result, o Options) *slack.WebhookMessage {
	o = o.withDefaults()
	since := r.Started
	if n := len(r.Attempts); n > 0 && !r.Attempts[n-1].Started.IsZero() {
		since = r.Attempts[n-1].Started
	}
	var text strings.Builder
	text.WriteString(escapeWithin(r.RunningHeadline(), maxHeadline) + "\n")
	line := "Running"
	if !since.IsZero() {
		line += " since " + slackDate(since)
	}
	if h := oneLine(r.Host); h != "" {
		line += " on " + escapeWithin(h, maxField)
	}
	text.WriteString(line)
	if link := slackLink(r.Link); link != "" {
		text.WriteString("\n" + link)
	}
	f := []slack.AttachmentField{}
	if len(r.Pending) > 0 {
		f = append(f, slack.AttachmentField{Title: "Pending", Value: escapeWithin(strings.Join(r.Pending, "\n"), maxMigFields)})
	}
	f = appendField(f, "Host", r.Host, true)
	f = appendField(f, "Namespace", r.Namespace, true)
	f = appendField(f, "App", r.App, true)
	f = appendField(f, "Revision", r.Revision, true)
	return message(o, text.String(), runningColor, r.RunningHeadline(), f)
}

// buildFinishedNotice is what the running notice becomes once the run has
// ended: the final headline and colour, the result in the thread.
func buildFinishedNotice(r report.Result) *slack.WebhookMessage {
	text := escapeWithin(r.Headline(), maxHeadline) + "\n" +
		escapeWithin(oneLine(searchWords+": "+r.Describe()), maxResultLine) + "; details in the thread"
	f := []slack.AttachmentField{{Title: "Outcome", Value: escapeWithin(r.Describe(), maxField), Short: true}}
	f = appendField(f, "Duration", r.Duration.Round(time.Millisecond).String(), true)
	return &slack.WebhookMessage{
		Text: text,
		Attachments: []slack.Attachment{{
			Color:    color(r),
			Fallback: escapeWithin(r.Headline(), maxField),
			Fields:   f,
		}},
	}
}

// slackDate shows t in each reader's own time zone, e.g. "today at
// 14:02", falling back to UTC where Slack cannot format dates.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// slackLink renders an http(s) link for Slack: <URL|host>. The URL's &
// is escaped as Slack asks; <, > and | (which would end the link early)
// and spaces are percent-encoded. A link that is not an absolute http(s)
// URL, or longer than report.MaxLink, is left out (report.LinkTemplate
// makes neither).
func slackLink(link string) string {
	u, err := url.Parse(link)
	if link == "" || len(link) > report.MaxLink || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	// The scheme as url.Parse has it, lower case: Slack links only
	// "http" and "https" spelt so.
	href := linkEscaper().Replace(report.CleanOutput(u.Scheme + link[len(u.Scheme):]))
	label := escapeWithin(u.Host, maxLinkLabel)
	if len(href)+len(label)+len("<|>") > maxLinkLine {
		return ""
	}
	return "<" + href + "|" + label + ">"
}

// The escapers are built on first use, not at every start of migrun.
var linkEscaper = sync.OnceValue(func() *strings.Replacer {
	return strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C", " ", "%20", "\t", "%09", "\n", "%0A")
})

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
	f = appendField(f, "Duration", r.Duration.Round(time.Millisecond).String(), true)
	var lines []string
	for _, m := range r.Migrations {
		lines = append(lines, fmt.Sprintf("%s %s (%s)", m.Version, m.Name, m.Action))
	}
	if m := r.FailedMigration; m != nil {
		lines = append(lines, failedLine(*m))
	}
	switch {
	case len(lines) > 0:
		f = append(f, slack.AttachmentField{Title: "Migrations", Value: escapeWithin(strings.Join(lines, "\n"), maxMigFields)})
	case r.Outcome == report.Succeeded || r.Outcome == report.Skipped:
		f = appendField(f, "Migrations", "none", true)
	}
	f = appendField(f, "Host", r.Host, true)
	f = appendField(f, "Namespace", r.Namespace, true)
	f = appendField(f, "App", r.App, true)
	f = appendField(f, "Revision", r.Revision, true)
	if r.Lock.Acquired && r.Lock.Waited >= time.Second {
		f = appendField(f, "Lock wait", r.Lock.Waited.Round(time.Second).String(), true)
	}
	f = appendField(f, "Lock lost", r.Lock.Lost, false)
	if lines := r.AttemptLines(); len(lines) > 0 {
		f = append(f, slack.AttachmentField{Title: "Attempts", Value: escapeWithin(strings.Join(lines[1:], "\n"), maxMigFields)})
	}
	f = appendField(f, "Error", r.Err, false)
	return f
}

// failedLine is the failed migration in the Migrations field.
func failedLine(m rails.Migration) string {
	if m.Action == "" {
		return m.Version + " " + m.Name + " (failed)"
	}
	return m.Version + " " + m.Name + " (failed while " + m.Action + ")"
}

// appendField adds a one-line field when value is not empty.
func appendField(f []slack.AttachmentField, title, value string, short bool) []slack.AttachmentField {
	if value = oneLine(value); value != "" {
		f = append(f, slack.AttachmentField{Title: title, Value: escapeWithin(value, maxField), Short: short})
	}
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
	output = report.CleanOutput(output)
	if strings.TrimSpace(output) == "" {
		return noOutput
	}
	output, _ = report.CutMiddle(output, budget, runeCost)
	return breakFences(escape(output))
}

// escape makes text safe for Slack: the three characters Slack requires
// escaped, so "<!channel>" pings nobody and "<http://x|y>" links nowhere,
// and no invalid UTF-8 or control characters.
func escape(s string) string {
	return slackEscaper().Replace(report.CleanOutput(s))
}

var slackEscaper = sync.OnceValue(func() *strings.Replacer { return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;") })

// escapeWithin escapes s cut to at most max bytes once escaped, marking the
// cut with an ellipsis.
func escapeWithin(s string, max int) string {
	s = report.CleanOutput(s)
	if cost(s) <= max {
		return escape(s)
	}
	return escape(report.PrefixCosting(s, max-len("…"), runeCost)) + "…"
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

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
