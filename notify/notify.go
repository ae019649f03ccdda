// Package notify tells a Slack channel how a migration went.
//
// Delivery is bounded and never in the way: every attempt has a timeout,
// retries stop at a total bound, and errors never contain the webhook URL
// or the bot token, both of which are secrets.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrun/migrun/report"
)

// Policy says which results are worth a message.
type Policy string

// The policies MIGRUN_NOTIFY accepts.
const (
	Always   Policy = "always"
	Changes  Policy = "changes"  // migrations applied, or something went wrong
	Failures Policy = "failures" // only when something went wrong
	Never    Policy = "never"
)

// ParsePolicy reads a MIGRUN_NOTIFY value.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case Always, Changes, Failures, Never:
		return p, nil
	}
	return "", fmt.Errorf("unknown notify policy %q (want always, changes, failures or never)", s)
}

// Wants reports whether r is to be posted under the policy.
func (p Policy) Wants(r report.Result) bool {
	switch p {
	case Always:
		return true
	case Changes:
		return !r.OK() || r.Applied() || r.Lock.Lost != ""
	case Failures:
		return !r.OK() || r.Lock.Lost != ""
	}
	return false
}

// Defaults for Options.
const (
	DefaultUsername       = "Rails DB Migration"
	DefaultIconEmoji      = ":rails:"
	DefaultTimeout        = 30 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
)

// Options configure where and how messages are posted.
type Options struct {
	WebhookURL string // an incoming webhook; wins over BotToken
	BotToken   string // chat.postMessage to Channel
	Channel    string // e.g. #deploys; with a webhook, the webhook's own when empty
	Username   string
	IconEmoji  string
	APIURL     string // Slack's API base for BotToken, for tests; default slack.APIURL

	Timeout        time.Duration // bound on all attempts together
	AttemptTimeout time.Duration // bound on each attempt
	HTTPClient     *http.Client
	Logger         *slog.Logger
}

// Enabled reports whether Slack is configured at all.
func (o Options) Enabled() bool { return o.WebhookURL != "" || o.BotToken != "" }

// Validate checks the options without echoing the secrets.
func (o Options) Validate() error {
	if o.WebhookURL != "" {
		u, err := url.Parse(o.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("the Slack webhook URL is malformed (want https://hooks.slack.com/services/...)")
		}
		return nil
	}
	if o.BotToken != "" && o.Channel == "" {
		return errors.New("a Slack bot token needs a channel (SLACK_CHANNEL)")
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Username == "" {
		o.Username = DefaultUsername
	}
	if o.IconEmoji == "" {
		o.IconEmoji = DefaultIconEmoji
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Notifier posts results to Slack.
type Notifier struct {
	opts Options
	post func(ctx context.Context, msg *slack.WebhookMessage) error
}

// New returns a Notifier for valid, enabled options.
func New(o Options) (*Notifier, error) {
	if !o.Enabled() {
		return nil, errors.New("slack is not configured")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{opts: o.withDefaults()}
	if o.WebhookURL != "" {
		n.post = n.postWebhook
	} else {
		n.post = n.postChat
	}
	return n, nil
}

// Notify posts r, retrying network errors, 5xx and 429 (after Retry-After)
// with backoff until the total timeout. The result never depends on it:
// callers log the error and go on.
func (n *Notifier) Notify(ctx context.Context, r report.Result) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	msg := BuildMessage(r, n.opts)
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, n.opts.AttemptTimeout)
		err := n.post(actx, msg)
		acancel()
		if err == nil {
			return nil
		}
		var retry *retryable
		if !errors.As(err, &retry) {
			return err
		}
		wait := backoff
		if retry.after > 0 {
			wait = retry.after
		}
		backoff = min(backoff*2, 8*time.Second)
		deadline, _ := ctx.Deadline()
		if time.Until(deadline) < wait {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, retry.err)
		}
		n.opts.Logger.Warn("slack notification failed; retrying", "attempt", attempt, "in", wait, "err", retry.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("giving up after %d attempts: %w", attempt, retry.err)
		case <-t.C:
		}
	}
}

// retryable marks a failure worth another attempt.
type retryable struct {
	err   error
	after time.Duration // from Retry-After, if the server said
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// postWebhook posts the message itself rather than through slack-go's
// PostWebhook, whose errors carry the webhook URL and which cannot say what
// Retry-After asked for. The JSON is slack-go's WebhookMessage all the same.
func (n *Notifier) postWebhook(ctx context.Context, msg *slack.WebhookMessage) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode slack message: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return errors.New("build slack webhook request: malformed webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.opts.HTTPClient.Do(req)
	if err != nil {
		return &retryable{err: fmt.Errorf("post to slack webhook: %w", withoutURL(err))}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return &retryable{
			err:   fmt.Errorf("slack webhook answered %s", resp.Status),
			after: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	default:
		return fmt.Errorf("slack webhook answered %s: %q", resp.Status, snippet)
	}
}

// postChat posts with a bot token through chat.postMessage.
func (n *Notifier) postChat(ctx context.Context, msg *slack.WebhookMessage) error {
	opts := []slack.Option{slack.OptionHTTPClient(n.opts.HTTPClient)}
	if n.opts.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(n.opts.APIURL))
	}
	api := slack.New(n.opts.BotToken, opts...)
	_, _, err := api.PostMessageContext(ctx, n.opts.Channel,
		slack.MsgOptionText(msg.Text, false),
		slack.MsgOptionAttachments(msg.Attachments...),
		slack.MsgOptionUsername(msg.Username),
		slack.MsgOptionIconEmoji(msg.IconEmoji),
	)
	if err == nil {
		return nil
	}
	var rate *slack.RateLimitedError
	var status slack.StatusCodeError
	var uerr *url.Error
	switch {
	case errors.As(err, &rate):
		return &retryable{err: errors.New("slack rate limited the message"), after: rate.RetryAfter}
	case errors.As(err, &status) && status.Code >= 500:
		return &retryable{err: fmt.Errorf("slack answered %d", status.Code)}
	case errors.As(err, &uerr):
		return &retryable{err: fmt.Errorf("post to slack: %w", withoutURL(err))}
	}
	return fmt.Errorf("post to slack: %w", err)
}

// withoutURL drops the request URL that net/http puts into its errors.
func withoutURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s: %w", uerr.Op, uerr.Err)
	}
	return err
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
