package report

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// LinkTemplate is a URL with placeholders for the run's values, e.g.
//
//	https://argocd.example.com/applications/{app}?revision={revision}
//
// (MIGRUN_LINK_TEMPLATE). The placeholders are {environment}, {app},
// {revision}, {host} and {namespace}; each value is percent-encoded as a
// whole, so a "/" in it becomes %2F and it cannot add a path, a query or
// a fragment. Braces are placeholders only: write %7B and %7D for literal
// ones.
type LinkTemplate string

// MaxLink bounds an expanded link, in bytes. A longer one is left out
// rather than cut: a cut URL leads somewhere else.
const MaxLink = 2000

// linkValue is the value of placeholder name in r; ok is false for a
// name that is no placeholder.
func linkValue(name string, r Result) (value string, ok bool) {
	switch name {
	case "environment":
		return r.Environment, true
	case "app":
		return r.App, true
	case "revision":
		return r.Revision, true
	case "host":
		return r.Host, true
	case "namespace":
		return r.Namespace, true
	}
	return "", false
}

// Validate checks the template: only known placeholders, only characters
// a URL may hold, and once expanded an absolute http(s) URL. An empty
// template is valid (no link). Errors are one line.
func (t LinkTemplate) Validate() error {
	if t == "" {
		return nil
	}
	if len(t) > MaxLink {
		return fmt.Errorf("the link template is %d bytes, more than %d", len(t), MaxLink)
	}
	sample, err := t.expand(func(string) string { return "x" })
	if err != nil {
		return err
	}
	for _, c := range sample {
		if !urlChar(c) {
			return fmt.Errorf("the link template holds %q, which a URL cannot: percent-encode it", c)
		}
	}
	u, err := url.Parse(sample)
	switch {
	case err != nil:
		return errors.New("the link template is not a URL (a % must start an escape such as %20)")
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("the link template must start with https:// or http://")
	case u.Host == "":
		return errors.New("the link template has no host")
	}
	return nil
}

// Expand fills the template with r's values. It is "" for an empty or
// invalid template, or when the link would be longer than MaxLink.
func (t LinkTemplate) Expand(r Result) string {
	if t == "" || t.Validate() != nil {
		return ""
	}
	link, err := t.expand(func(name string) string {
		v, _ := linkValue(name, r)
		return pathSafeEscape(strings.TrimSpace(v))
	})
	if err != nil || len(link) > MaxLink {
		return ""
	}
	return link
}

// expand replaces each {name} by value(name).
func (t LinkTemplate) expand(value func(name string) string) (string, error) {
	var b strings.Builder
	s := string(t)
	for {
		open := strings.IndexAny(s, "{}")
		if open < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if s[open] == '}' {
			return "", errors.New("the link template has a } without its { (write %7D for a literal one)")
		}
		end := strings.IndexAny(s[open+1:], "{}")
		if end < 0 || s[open+1+end] != '}' {
			return "", errors.New("the link template has a { without its } (write %7B for a literal one)")
		}
		name := s[open+1 : open+1+end]
		if _, ok := linkValue(name, Result{}); !ok {
			return "", fmt.Errorf("the link template has an unknown placeholder {%s} (want {environment}, {app}, {revision}, {host} or {namespace})", oneLine(name, 40))
		}
		b.WriteString(s[:open])
		b.WriteString(value(name))
		s = s[open+1+end+1:]
	}
}

// pathSafeEscape percent-encodes everything but RFC 3986's unreserved
// characters, so the value is one opaque piece in a path or a query.
func pathSafeEscape(v string) string {
	// QueryEscape leaves only unreserved characters and writes a space as
	// "+", which a path would read as a plus.
	return strings.ReplaceAll(url.QueryEscape(v), "+", "%20")
}

// urlChar reports whether c may appear in a URL as written (RFC 3986:
// unreserved, reserved and the % of escapes).
func urlChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.ContainsRune("-._~:/?#[]@!$&'()*+,;=%", c)
}
