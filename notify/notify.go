// Package notify tells a Slack channel how a migration went.
//
// Delivery is bounded and never in the way: every attempt has a timeout,
// retries stop at a total bound, and errors and logs never contain the
// webhook URL or the bot token, both of which are secrets.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
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

// Backoff between attempts when Slack did not say how long to wait.
const (
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 5 * time.Second
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

	Timeout        time.Duration // bound on all attempts together; default DefaultTimeout
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

// badHTTPURL says what is wrong with an absolute http(s) URL, in words
// that do not quote it: url.Parse's errors contain the whole URL.
func badHTTPURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "it does not parse"
	case u.Scheme != "https" && u.Scheme != "http":
		return "it must start with https://"
	case u.Host == "":
		return "it has no host"
	}
	return ""
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
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.HTTPClient == nil {
		// A redirect would carry the webhook URL along in Referer; a
		// webhook that redirects is a configuration error anyway.
		o.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Notifier posts results to Slack.
type Notifier struct {
	opts   Options
	secret *strings.Replacer
	post   func(ctx context.Context, msg *slack.WebhookMessage) error
}

// New returns a Notifier for valid, enabled options.
func New(o Options) (*Notifier, error) {
	if !o.Enabled() {
		return nil, errors.New("slack is not configured (no webhook URL or bot token)")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{opts: o.withDefaults(), secret: secretScrubber(o)}
	if n.opts.WebhookURL != "" {
		n.post = n.postWebhook
	} else {
		n.post = n.postChat
	}
	return n, nil
}

// secretScrubber replaces the webhook URL, its path and query (the secret
// part of a webhook), and the token with "[redacted]". Errors are built not
// to contain them; this is the second line of defence.
func secretScrubber(o Options) *strings.Replacer {
	var secrets []string
	add := func(s string) {
		if len(s) > 1 { // never "/" or "": that would redact every slash
			secrets = append(secrets, s)
		}
	}
	for _, hook := range []string{o.WebhookURL, strings.TrimSpace(o.WebhookURL)} {
		add(hook)
		if u, err := url.Parse(strings.TrimSpace(hook)); err == nil {
			add(u.EscapedPath())
			add(u.Path)
			add(u.RawQuery)
		}
	}
	add(o.BotToken)
	add(strings.TrimSpace(o.BotToken))
	// Longest first: the replacer tries them in order, and the URL must go
	// whole, not as a host around a redacted path.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, s := range secrets {
		pairs = append(pairs, s, "[redacted]")
	}
	return strings.NewReplacer(pairs...)
}

// scrubbedError is what Notify returns: its text has no secret in it.
// Unwrap gives the cause (built without the secrets too), for errors.Is.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (n *Notifier) scrub(err error) error {
	if err == nil {
		return nil
	}
	var done *scrubbedError
	if errors.As(err, &done) {
		return err
	}
	return &scrubbedError{msg: n.secret.Replace(err.Error()), err: err}
}

// Notify posts r. Network errors, timeouts, 5xx and 429 are retried with
// backoff, or after the Retry-After Slack asked for, as long as the next
// attempt can start within the total timeout. Retries are logged; the
// final error is for the caller to log. The run's result never depends on it.
func (n *Notifier) Notify(ctx context.Context, r report.Result) error {
	msg := BuildMessage(r, n.opts) // before the clock starts: the bound is for Slack
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, n.opts.AttemptTimeout)
		err := n.post(actx, msg)
		acancel()
		if err == nil {
			return nil
		}
		var retry *retryable
		if !errors.As(err, &retry) {
			return n.scrub(err)
		}
		giveUp := func(why string) error {
			return n.scrub(fmt.Errorf("%w (gave up after %s in %s: %s)",
				retry.err, attempts(attempt), time.Since(start).Round(time.Millisecond), why))
		}
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return giveUp(fmt.Sprintf("out of the %s bound", n.opts.Timeout))
			}
			return giveUp("cancelled")
		}
		wait := retry.after
		if wait <= 0 {
			wait = jitter(backoff)
			backoff = min(backoff*2, maxBackoff)
		}
		if deadline, _ := ctx.Deadline(); time.Until(deadline) <= wait {
			return giveUp(fmt.Sprintf("the next attempt, in %s, would be past the %s bound", wait.Round(time.Millisecond), n.opts.Timeout))
		}
		n.opts.Logger.Warn("slack notification attempt failed; retrying",
			"attempt", attempt, "retry_in", wait.Round(time.Millisecond).String(), "err", n.scrub(retry.err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp("cancelled")
		case <-t.C:
		}
	}
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return strconv.Itoa(n) + " attempts"
}

// jitter spreads d by ±20%, so Pods that failed together retry apart.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}

// retryable marks a failure worth another attempt.
type retryable struct {
	err   error
	after time.Duration // what Retry-After asked for, if anything
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// postWebhook posts the message itself rather than through slack-go's
// PostWebhook, whose errors carry the webhook URL and which cannot read a
// Retry-After date. The JSON is slack-go's WebhookMessage all the same.
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
	// Slack answers errors with a word such as "invalid_payload"; read a
	// little of it, and drain a little more so the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("slack webhook answered %s", resp.Status)
	if s := oneLine(clean(string(snippet))); s != "" {
		err = fmt.Errorf("slack webhook answered %s: %q", resp.Status, s)
	}
	if transientStatus(resp.StatusCode) {
		return &retryable{err: err, after: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return err
}

// transientStatus reports whether an HTTP status is worth another attempt.
func transientStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500
}

// postChat posts with a bot token through chat.postMessage.
func (n *Notifier) postChat(ctx context.Context, msg *slack.WebhookMessage) error {
	// slack-go turns a Retry-After date into a number-parse error: note the
	// answer on the way through and classify it here.
	rec := &recordingClient{client: n.opts.HTTPClient}
	opts := []slack.Option{slack.OptionHTTPClient(rec)}
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
	var uerr *url.Error
	noAnswer := errors.As(err, &uerr) // network error or timeout
	midAnswer := errors.Is(err, context.DeadlineExceeded)
	err = fmt.Errorf("post to slack chat.postMessage: %w", withoutURL(err))
	var answer slack.SlackErrorResponse
	switch {
	case noAnswer || midAnswer:
		return &retryable{err: err}
	case transientStatus(rec.status):
		return &retryable{err: err, after: retryAfter(rec.retryAfter, time.Now())}
	case errors.As(err, &answer) && transientAPIError[answer.Err]:
		return &retryable{err: err}
	}
	return err
}

// transientAPIError are the chat.postMessage errors Slack documents as
// worth trying again.
var transientAPIError = map[string]bool{
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
	"ratelimited":         true,
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

// withoutURL drops the request URL that net/http puts into its errors.
func withoutURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// maxRetryAfter caps what Retry-After can ask for, far beyond any total
// bound, so a huge number cannot overflow a Duration.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads a Retry-After header: seconds, or an HTTP date. Zero
// means none (or nonsense): back off as usual.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(min(secs, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}
