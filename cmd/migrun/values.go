package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// The value types of settings. Each parses from text the same way for a
// variable and a flag; names and keywords ignore case, as environment
// variables conventionally do.

// duration is a Go duration that says how to fix a missing unit.
type duration time.Duration

func (d *duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if f, err := strconv.ParseFloat(s, 64); err == nil && f != 0 {
		return fmt.Errorf("a duration needs a unit, e.g. %ss or %sm", s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (want e.g. 30s, 10m, 1h30m)")
	}
	if v < 0 {
		return errors.New("a duration must not be negative")
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// boolean accepts true/false, 1/0, yes/no, on/off.
type boolean bool

func (b *boolean) UnmarshalText(text []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(text))) {
	case "true", "1", "yes", "on":
		*b = true
	case "false", "0", "no", "off":
		*b = false
	default:
		return errors.New("not a boolean (want true or false)")
	}
	return nil
}

func (b boolean) MarshalText() ([]byte, error) { return []byte(strconv.FormatBool(bool(b))), nil }

// keyword is one of a fixed set of words, stored in lower case.
type keyword string

// oneOf parses text as one of the words, ignoring case and surrounding space.
func oneOf(text []byte, words ...string) (keyword, error) {
	s := strings.ToLower(strings.TrimSpace(string(text)))
	for _, w := range words {
		if s == w {
			return keyword(w), nil
		}
	}
	return "", fmt.Errorf("want %s", orList(words))
}

func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

type lockMode keyword

func (m *lockMode) UnmarshalText(text []byte) error {
	k, err := oneOf(text, "session", "transaction", "none")
	*m = lockMode(k)
	return err
}

type logFormat keyword

func (f *logFormat) UnmarshalText(text []byte) error {
	k, err := oneOf(text, "text", "json")
	*f = logFormat(k)
	return err
}

type logLevel keyword

func (l *logLevel) UnmarshalText(text []byte) error {
	k, err := oneOf(text, "debug", "info", "warn", "error")
	*l = logLevel(k)
	return err
}

func (l logLevel) level() slog.Level {
	var v slog.Level
	_ = v.UnmarshalText([]byte(l))
	return v
}

type notifyPolicy keyword

func (p *notifyPolicy) UnmarshalText(text []byte) error {
	k, err := oneOf(text, "always", "changes", "failures", "never")
	*p = notifyPolicy(k)
	return err
}

// onLockLost says what migrun does with the command when the lock is lost.
type onLockLost keyword

func (o *onLockLost) UnmarshalText(text []byte) error {
	k, err := oneOf(text, "stop", "continue")
	*o = onLockLost(k)
	return err
}

// count is a whole number, zero or more.
type count int

func (c *count) UnmarshalText(text []byte) error {
	n, err := strconv.Atoi(strings.TrimSpace(string(text)))
	if err != nil || n < 0 {
		return errors.New("not a count (want a whole number, 0 or more)")
	}
	*c = count(n)
	return nil
}

func (c count) MarshalText() ([]byte, error) { return []byte(strconv.Itoa(int(c))), nil }
