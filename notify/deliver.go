package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/migrun/migrun/internal/backoff"
	"github.com/migrun/migrun/internal/redact"
	"github.com/migrun/migrun/report"
)

// Backoff between attempts when the receiver did not say how long to wait.
const (
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// sender is what every destination shares: each attempt bounded, retries
// within a total bound, and errors and logs without the secrets (webhook
// URLs, the bot token).
type sender struct {
	what           string // names the destination in logs, e.g. "slack notification"
	timeout        time.Duration
	attemptTimeout time.Duration
	client         *http.Client
	log            *slog.Logger
	secret         *strings.Replacer
}

// newSender is a sender with the defaults for what is not set.
func newSender(what string, timeout, attemptTimeout time.Duration, client *http.Client, log *slog.Logger, secrets ...string) sender {
	s := sender{what: what, timeout: timeout, attemptTimeout: attemptTimeout, client: client, log: log, secret: secretScrubber(secrets...)}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.attemptTimeout <= 0 {
		s.attemptTimeout = DefaultAttemptTimeout
	}
	if s.client == nil {
		s.client = noRedirects()
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// noRedirects is the default client: a redirect would carry a webhook URL
// along in Referer, and a webhook that redirects is a configuration error
// anyway.
func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// send calls attempt until it succeeds or fails for good. Network errors,
// timeouts, 5xx and 429 (those attempt marks retryable) are retried with
// backoff, or after the Retry-After the receiver asked for, as long as the
// next attempt can start within the total timeout, which starts now.
// Retries are logged; the final error is for the caller to log.
func (s *sender) send(ctx context.Context, attempt func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	schedule := backoff.New(firstBackoff, maxBackoff)
	for n := 1; ; n++ {
		actx, acancel := context.WithTimeout(ctx, s.attemptTimeout)
		err := attempt(actx)
		acancel()
		if err == nil {
			return nil
		}
		var retry *retryable
		if !errors.As(err, &retry) {
			return s.scrub(err)
		}
		giveUp := func(why string) error {
			return s.scrub(fmt.Errorf("%w (gave up after %s in %s: %s)",
				retry.err, attempts(n), time.Since(start).Round(time.Millisecond), why))
		}
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return giveUp(fmt.Sprintf("out of the %s bound", s.timeout))
			}
			return giveUp("cancelled")
		}
		wait := retry.after
		if wait <= 0 {
			wait = schedule.Next()
		}
		if deadline, _ := ctx.Deadline(); time.Until(deadline) <= wait {
			return giveUp(fmt.Sprintf("the next attempt, in %s, would be past the %s bound", wait.Round(time.Millisecond), s.timeout))
		}
		s.log.Warn(s.what+" attempt failed; retrying",
			"attempt", n, "retry_in", wait.Round(time.Millisecond).String(), "err", s.scrub(retry.err))
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

// retryable marks a failure worth another attempt.
type retryable struct {
	err   error
	after time.Duration // what Retry-After asked for, if anything
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// postJSON posts body to a webhook URL, by hand rather than through a
// library whose errors would carry the URL. name says which webhook in
// errors, e.g. "slack webhook".
func (s *sender) postJSON(ctx context.Context, name, hook string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build %s request: malformed URL", name)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "migrun")
	resp, err := s.client.Do(req)
	if err != nil {
		return &retryable{err: fmt.Errorf("post to %s: %w", name, withoutURL(err))}
	}
	defer resp.Body.Close()
	// Receivers answer errors with a word such as "invalid_payload"; read
	// a little of it, and drain a little more so the connection can be
	// reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("%s answered %s", name, resp.Status)
	if s := oneLine(report.CleanOutput(string(snippet))); s != "" {
		err = fmt.Errorf("%s answered %s: %q", name, resp.Status, s)
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

// badHTTPURL says what is wrong with an absolute http(s) URL, in words
// that do not quote it: url.Parse's errors contain the whole URL.
//
// Plain http:// is refused (the URL is a secret, and so is what is posted)
// except to a loopback host: a local stand-in or a sidecar proxy.
func badHTTPURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "it does not parse"
	case u.Scheme != "https" && u.Scheme != "http":
		return "it must start with https://"
	case u.Host == "":
		return "it has no host"
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return "it must start with https:// (http:// only to localhost)"
	}
	return ""
}

// loopback reports whether host is localhost or a loopback address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// urlSecrets are the parts of a webhook URL that must not be shown: the
// whole URL as given and trimmed, its path and query (where a webhook
// keeps its secret) and any user information.
func urlSecrets(hook string) []string {
	secrets := []string{hook, strings.TrimSpace(hook)}
	if u, err := url.Parse(strings.TrimSpace(hook)); err == nil {
		secrets = append(secrets, u.EscapedPath(), u.Path, u.RawQuery)
		if u.User != nil {
			secrets = append(secrets, u.User.String(), u.User.Username())
			if p, ok := u.User.Password(); ok {
				secrets = append(secrets, p)
			}
		}
	}
	return secrets
}

// secretScrubber replaces each secret with redact.Mask. Errors are built
// not to contain them; this is the second line of defence.
func secretScrubber(secrets ...string) *strings.Replacer {
	var keep []string
	for _, s := range secrets {
		if len(s) > 1 { // never "/" or "": that would redact every slash
			keep = append(keep, s)
		}
	}
	// Longest first: the replacer tries them in order, and a URL must go
	// whole, not as a host around a redacted path.
	slices.SortFunc(keep, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, s := range keep {
		pairs = append(pairs, s, redact.Mask)
	}
	return strings.NewReplacer(pairs...)
}

// scrubbedError is what delivery returns: its text has no secret in it.
// Unwrap gives the cause (built without the secrets too), for errors.Is.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (s *sender) scrub(err error) error {
	if err == nil {
		return nil
	}
	var done *scrubbedError
	if errors.As(err, &done) {
		return err
	}
	return &scrubbedError{msg: s.secret.Replace(err.Error()), err: err}
}
