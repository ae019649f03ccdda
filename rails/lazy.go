package rails

import (
	"regexp"
	"sync"
)

// lazyRegexp is a regular expression compiled on first use (re). Go
// initialises every package of the binary at start-up, whatever the
// subcommand: compiled at package level, this package's expressions cost
// every `migrun version`, `wait` and lock-only run about a millisecond
// before main (GODEBUG=inittrace=1), though only a run that reads Rails'
// output or files needs them. A struct rather than a sync.OnceValue
// closure, so that declaring one allocates nothing at start-up either.
type lazyRegexp struct {
	expr     string
	once     sync.Once
	compiled *regexp.Regexp
}

// lazy declares a lazyRegexp.
func lazy(expr string) *lazyRegexp { return &lazyRegexp{expr: expr} }

// re is the compiled expression.
func (l *lazyRegexp) re() *regexp.Regexp {
	l.once.Do(func() { l.compiled = regexp.MustCompile(l.expr) })
	return l.compiled
}
