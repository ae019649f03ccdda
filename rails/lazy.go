package rails

import (
	"regexp"
	"sync"
)

// lazyRegexp compiles expr on first use. Go initialises every package of
// the binary at start-up, whatever the subcommand: compiled at package
// level, this package's expressions cost every `migrun version`, `wait`
// and lock-only run about a millisecond before main (GODEBUG=inittrace=1),
// though only a run that reads Rails' output or files needs them.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
