// Package notify tells people how a migration went: a Slack channel (by
// incoming webhook or bot token), and any other receiver through a
// generic webhook that gets the result as a versioned JSON document.
//
// Delivery is bounded and never in the way: every attempt has a timeout,
// retries stop at a total bound, and errors and logs never contain a
// webhook URL or the bot token, which are secrets.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/report"
)

// Defaults for Options.
const (
	DefaultUsername       = "Rails DB Migration"
	DefaultIconEmoji      = ":rails:"
	DefaultTimeout        = 30 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
)

// Options configure where and how messages are posted. Surrounding
// whitespace in WebhookURL and BotToken (a trailing newline in a mounted
// Secret) is ignored.
type Options struct {
	WebhookURL string // an incoming webhook; wins over BotToken
	BotToken   string // chat.postMessage to Channel
	Channel    string // e.g. #deploys; with a webhook, the webhook's own when empty
	Username   string // default DefaultUsername
	IconEmoji  string // default DefaultIconEmoji
	APIURL     string // Slack's Web API base for BotToken, for tests; default slack.APIURL

	Timeout        time.Duration // bound on all attempts of one call together; default DefaultTimeout
	AttemptTimeout time.Duration // bound on each attempt; default DefaultAttemptTimeout
	HTTPClient     *http.Client  // default: one that does not follow redirects
	Logger         *slog.Logger  // retries are logged here; default slog.Default()
}

// Enabled reports whether Slack is configured at all.
func (o Options) Enabled() bool {
	return strings.TrimSpace(o.WebhookURL) != "" || strings.TrimSpace(o.BotToken) != ""
}

// Validate checks the options. Its errors are one line and never echo the
// webhook URL or the token.
func (o Options) Validate() error {
	if o.Timeout < 0 || o.AttemptTimeout < 0 {
		return errors.New("slack notification timeouts must not be negative")
	}
	if hook := strings.TrimSpace(o.WebhookURL); hook != "" {
		if why := badHTTPURL(hook); why != "" {
			return fmt.Errorf("the Slack webhook URL is malformed: %s (want https://hooks.slack.com/services/...)", why)
		}
		return nil
	}
	if strings.TrimSpace(o.BotToken) != "" {
		if strings.TrimSpace(o.Channel) == "" {
			return errors.New("a Slack bot token needs a channel (SLACK_CHANNEL)")
		}
		if o.APIURL != "" {
			if why := badHTTPURL(o.APIURL); why != "" {
				return fmt.Errorf("the Slack API URL is malformed: %s", why)
			}
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	o.WebhookURL = strings.TrimSpace(o.WebhookURL)
	o.BotToken = strings.TrimSpace(o.BotToken)
	if o.Username == "" {
		o.Username = DefaultUsername
	}
	if o.IconEmoji == "" {
		o.IconEmoji = DefaultIconEmoji
	}
	if o.APIURL != "" && !strings.HasSuffix(o.APIURL, "/") {
		o.APIURL += "/" // slack-go appends the method name
	}
	return o
}

// Notifier posts to Slack.
type Notifier struct {
	opts Options
	sender
}

// New returns a Notifier for valid, enabled options.
func New(o Options) (*Notifier, error) {
	if !o.Enabled() {
		return nil, errors.New("slack is not configured (no webhook URL or bot token)")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	return &Notifier{opts: o, sender: newSender("slack notification", o.Timeout, o.AttemptTimeout, o.HTTPClient, o.Logger,
		append(urlSecrets(o.WebhookURL), o.BotToken)...)}, nil
}

// Posted is a running notice Slack has: Finished completes it.
type Posted struct {
	// channel and ts identify the message, from chat.postMessage's answer;
	// empty when it went through a webhook, which says neither.
	channel, ts string
}

// Notify posts r on its own: Finished(ctx, r, nil).
func (n *Notifier) Notify(ctx context.Context, r report.Result) error {
	return n.Finished(ctx, r, nil)
}

// Running posts the notice that a migration is running: where (the
// environment, app, revision, host and namespace of r), since when (the
// start of r's last attempt, else r.Started) and what is pending
// (r.Pending), with r.Link. Pass what it returns to Finished. The run's
// result never depends on it.
func (n *Notifier) Running(ctx context.Context, r report.Result) (*Posted, error) {
	msg := buildRunningMessage(r, n.opts)
	if n.opts.WebhookURL != "" {
		if err := n.send(ctx, func(ctx context.Context) error { return n.postWebhook(ctx, msg) }); err != nil {
			return nil, err
		}
		return &Posted{}, nil
	}
	var posted *Posted
	err := n.send(ctx, func(ctx context.Context) error {
		var err error
		posted, err = n.postChat(ctx, n.opts.Channel, msg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return posted, nil
}

// Finished posts the result r. With running, the notice Running posted:
//
//   - through a webhook, the result is a second message (a webhook can
//     neither edit nor thread);
//   - with a bot token, the result is a reply in the notice's thread,
//     broadcast to the channel, and the notice is then edited to say how
//     the run ended.
//
// A reply rather than only an edit: Slack notifies nobody of an edit, and
// a result that arrives an hour after its notice, a failure above all,
// must reach phones and unread counts. The edit keeps the channel from
// showing a migration as running after it ended; it is best-effort. Slack
// posts the reply unthreaded if the notice was deleted.
//
// Once a notice is posted, post its result whatever the notification
// policy, or the channel shows it running for ever. Everything shares one
// bound, Options.Timeout, the reply first.
func (n *Notifier) Finished(ctx context.Context, r report.Result, running *Posted) error {
	msg := BuildMessage(r, n.opts) // before the clock starts: the bound is for Slack
	if n.opts.WebhookURL != "" {
		return n.send(ctx, func(ctx context.Context) error { return n.postWebhook(ctx, msg) })
	}
	if running == nil || running.ts == "" {
		return n.send(ctx, func(ctx context.Context) error {
			_, err := n.postChat(ctx, n.opts.Channel, msg)
			return err
		})
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	if running.channel == "" { // Slack always answers it; just in case
		running = &Posted{channel: n.opts.Channel, ts: running.ts}
	}
	replyErr := n.send(ctx, func(ctx context.Context) error {
		_, err := n.postChat(ctx, running.channel, msg, slack.MsgOptionTS(running.ts), slack.MsgOptionBroadcast())
		return err
	})
	update := buildFinishedNotice(r)
	updateErr := n.send(ctx, func(ctx context.Context) error { return n.updateChat(ctx, running, update) })
	switch {
	case replyErr != nil && updateErr != nil:
		return n.scrub(fmt.Errorf("%w; updating the running notice failed too: %v", replyErr, updateErr))
	case replyErr != nil:
		return replyErr
	case updateErr != nil:
		return n.scrub(fmt.Errorf("the result was posted, but updating the running notice failed: %w", updateErr))
	}
	return nil
}

// postWebhook posts the message through the incoming webhook. The JSON is
// slack-go's WebhookMessage.
func (n *Notifier) postWebhook(ctx context.Context, msg *slack.WebhookMessage) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode slack message: %w", err)
	}
	return n.postJSON(ctx, "slack webhook", n.opts.WebhookURL, body)
}

// api is a Slack Web API client for one attempt, noting each answer's
// status and Retry-After on the way through.
func (n *Notifier) api() (*slack.Client, *recordingClient) {
	rec := &recordingClient{client: n.client}
	opts := []slack.Option{slack.OptionHTTPClient(rec)}
	if n.opts.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(n.opts.APIURL))
	}
	return slack.New(n.opts.BotToken, opts...), rec
}

// postChat posts msg with the bot token through chat.postMessage to
// channel, with any extra options (a thread), and returns where it went.
func (n *Notifier) postChat(ctx context.Context, channel string, msg *slack.WebhookMessage, extra ...slack.MsgOption) (*Posted, error) {
	api, rec := n.api()
	opts := append([]slack.MsgOption{
		slack.MsgOptionText(msg.Text, false),
		slack.MsgOptionAttachments(msg.Attachments...),
		slack.MsgOptionUsername(msg.Username),
		slack.MsgOptionIconEmoji(msg.IconEmoji),
	}, extra...)
	channelID, ts, err := api.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		return nil, chatError("chat.postMessage", err, rec)
	}
	return &Posted{channel: channelID, ts: ts}, nil
}

// updateChat replaces the text and attachments of a posted message
// (chat.update; the channel must be the ID chat.postMessage answered).
func (n *Notifier) updateChat(ctx context.Context, p *Posted, msg *slack.WebhookMessage) error {
	api, rec := n.api()
	_, _, _, err := api.UpdateMessageContext(ctx, p.channel, p.ts,
		slack.MsgOptionText(msg.Text, false),
		slack.MsgOptionAttachments(msg.Attachments...),
	)
	if err != nil {
		return chatError("chat.update", err, rec)
	}
	return nil
}

// chatError classifies a Web API error: retryable or final.
func chatError(method string, err error, rec *recordingClient) error {
	var uerr *url.Error
	noAnswer := errors.As(err, &uerr) // network error or timeout
	midAnswer := errors.Is(err, context.DeadlineExceeded)
	err = fmt.Errorf("post to slack %s: %w", method, withoutURL(err))
	var answer slack.SlackErrorResponse
	switch {
	case noAnswer || midAnswer:
		return &retryable{err: err}
	case transientStatus(rec.status):
		// slack-go turns a Retry-After date into a number-parse error:
		// the recorded header is read here instead.
		return &retryable{err: err, after: retryAfter(rec.retryAfter, time.Now())}
	case errors.As(err, &answer) && transientAPIError(answer.Err):
		return &retryable{err: err}
	}
	return err
}

// transientAPIError reports whether code is one of the Web API errors
// Slack documents as worth trying again.
func transientAPIError(code string) bool {
	switch code {
	case "internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited":
		return true
	}
	return false
}

// recordingClient remembers the status and Retry-After of the last answer.
type recordingClient struct {
	client     *http.Client
	status     int
	retryAfter string
}

func (c *recordingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.client.Do(req)
	if err == nil {
		c.status, c.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	return resp, err
}
