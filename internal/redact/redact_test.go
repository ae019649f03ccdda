package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	s := New("s3cr3t p@ss", "https://hooks.slack.com/services/T0/B0/XYZ", "", "ab")
	tests := []struct{ in, want string }{
		{"password is s3cr3t p@ss", "password is " + Mask},
		{"encoded s3cr3t+p%40ss and s3cr3t%20p@ss", "encoded " + Mask + " and " + Mask},
		{"post https://hooks.slack.com/services/T0/B0/XYZ: timeout", "post " + Mask + ": timeout"},
		{"ab stays: too short to scrub", "ab stays: too short to scrub"},
		{"nothing here", "nothing here"},
	}
	for _, tt := range tests {
		if got := s.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var nilScrubber *Scrubber
	if got := nilScrubber.String("x"); got != "x" {
		t.Errorf("nil scrubber changed text: %q", got)
	}
}

func TestHandler(t *testing.T) {
	const secret = "hunter22"
	s := New(secret)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&buf, nil)
			if format == "json" {
				h = slog.NewJSONHandler(&buf, nil)
			}
			log := slog.New(s.Handler(h)).With("url", "postgres://u:"+secret+"@h/db")
			log.WithGroup("g").Error("connect with "+secret,
				"err", errors.New("dial: password "+secret),
				"n", 3,
				slog.Group("inner", "v", secret),
			)
			out := buf.String()
			if strings.Contains(out, secret) {
				t.Fatalf("secret leaked: %s", out)
			}
			if strings.Count(out, Mask) != 4 || !strings.Contains(out, "3") {
				t.Errorf("unexpected output: %s", out)
			}
		})
	}
}
