package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/migrun/migrun/report"
)

// WebhookOptions configure the generic webhook (MIGRUN_WEBHOOK_URL): a
// receiver of any kind (a Microsoft Teams or PagerDuty relay, an in-house
// bot) that gets each result as a report.Document in JSON, described in
// result.schema.json and README.md. Surrounding whitespace in URL is
// ignored.
type WebhookOptions struct {
	URL string // http(s); a secret: it is never shown

	Timeout        time.Duration // bound on all attempts together; default DefaultTimeout
	AttemptTimeout time.Duration // bound on each attempt; default DefaultAttemptTimeout
	HTTPClient     *http.Client  // default: one that does not follow redirects
	Logger         *slog.Logger  // retries are logged here; default slog.Default()
}

// Enabled reports whether a webhook is configured.
func (o WebhookOptions) Enabled() bool { return strings.TrimSpace(o.URL) != "" }

// Validate checks the options. Its errors are one line and never echo the
// URL.
func (o WebhookOptions) Validate() error {
	if o.Timeout < 0 || o.AttemptTimeout < 0 {
		return errors.New("result webhook timeouts must not be negative")
	}
	if o.Enabled() {
		if why := badHTTPURL(strings.TrimSpace(o.URL)); why != "" {
			return fmt.Errorf("the result webhook URL is malformed: %s", why)
		}
	}
	return nil
}

// Webhook posts results as JSON documents to a generic webhook.
type Webhook struct {
	url string
	sender
}

// NewWebhook returns a Webhook for valid, enabled options.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if !o.Enabled() {
		return nil, errors.New("no result webhook URL")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := newSender("result webhook", o.Timeout, o.AttemptTimeout, o.HTTPClient, o.Logger, urlSecrets(o.URL)...)
	return &Webhook{url: strings.TrimSpace(o.URL), sender: s}, nil
}

// Send posts r.Document() as JSON (Content-Type application/json), as the
// Slack webhook is posted: any 2xx is success; network errors, timeouts,
// 408, 429 (after its Retry-After) and 5xx are retried within the total
// bound; redirects are not followed. A retry after a timeout can deliver a
// document twice: a receiver that minds can tell by host and started.
// Errors and logs never contain the URL. The run's result never depends
// on it.
func (w *Webhook) Send(ctx context.Context, r report.Result) error {
	body, err := encodeDocument(r.Document())
	if err != nil {
		return err
	}
	return w.send(ctx, func(ctx context.Context) error {
		return w.postJSON(ctx, "result webhook", w.url, body)
	})
}

// encodeDocument writes d as compact JSON, leaving <, > and & as they are
// (receivers are not HTML pages).
func encodeDocument(d report.Document) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode result document: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
