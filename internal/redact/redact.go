// Package redact keeps secrets (database passwords, the Slack webhook URL, a
// bot token) out of everything migrun writes: log lines, errors, the
// termination log and notifications.
package redact

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strings"
)

// Mask replaces each secret.
const Mask = "[REDACTED]"

// minLen is the shortest secret that is scrubbed: replacing every "a" in a
// log because the password is "a" would destroy the log and reveal nothing.
const minLen = 4

// Scrubber replaces known secrets in text. The zero value scrubs nothing.
type Scrubber struct {
	secrets []string // longest first, so a secret containing another is masked whole
}

// New returns a Scrubber for secrets; empty and very short ones are ignored.
// A secret's percent-encoded forms are scrubbed too, since URLs and errors
// may carry them encoded.
func New(secrets ...string) *Scrubber {
	s := &Scrubber{}
	for _, sec := range secrets {
		for _, form := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
			if len(form) >= minLen && !slices.Contains(s.secrets, form) {
				s.secrets = append(s.secrets, form)
			}
		}
	}
	slices.SortFunc(s.secrets, func(a, b string) int { return len(b) - len(a) })
	return s
}

// String returns text with every secret masked.
func (s *Scrubber) String(text string) string {
	if s == nil {
		return text
	}
	for _, sec := range s.secrets {
		if strings.Contains(text, sec) {
			text = strings.ReplaceAll(text, sec, Mask)
		}
	}
	return text
}

// Handler wraps h so that the message and every attribute are scrubbed
// before they are written.
func (s *Scrubber) Handler(h slog.Handler) slog.Handler {
	return &handler{next: h, s: s}
}

type handler struct {
	next slog.Handler
	s    *Scrubber
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	clean := slog.NewRecord(r.Time, r.Level, h.s.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		clean.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, clean)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &handler{next: h.next.WithAttrs(clean), s: h.s}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), s: h.s}
}

// attr scrubs one attribute. Values that are not plain strings (errors,
// Stringers, structs) are rendered to text first, since their formatting is
// exactly where a URL with a password hides.
func (h *handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.s.String(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = h.attr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		return slog.String(a.Key, h.s.String(v.String()))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}
