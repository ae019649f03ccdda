// Package rails holds what migrun knows about Rails itself: the lines
// `rails db:migrate` prints for each migration, and which migrations
// Rails 6.1 to 8.x would check and how (Analyze): its glob, file name
// rule, version and name comparisons, the app configuration that moves
// them, and the manifest in which Rails states its own view
// (ManifestScript, ReadManifest). Each rule names the Rails source it
// follows; the tests compare them with the installed Ruby and Rails.
package rails

import (
	"bufio"
	"math"
	"strconv"
	"strings"
	"time"
)

// Migration is one migration Rails reported.
type Migration struct {
	Version string // e.g. "20240101000000"
	Name    string // e.g. "CreateUsers"
	// Action is "migrated" or "reverted" for a finished migration; for an
	// unfinished one "migrating" or "reverting", or "" when only the
	// backtrace named it.
	Action   string
	Duration time.Duration // as Rails reported it; zero for an unfinished one
}

// ActiveRecord::Migration#announce writes "== <version> <name>: <message> "
// padded with "=" to 79 columns (no padding past 75 characters of text):
//
//	== 20240101000000 CreateUsers: migrating ======================================
//	== 20240101000000 CreateUsers: migrated (0.0046s) =============================
//
// and "reverting" / "reverted (…s)" on the way down. A migration that fails
// prints its "migrating" line and never its "migrated" one.
var (
	doneLine  = lazy(`^==\s+(\d+)\s+(\S+):\s+(migrated|reverted)\s+\((\d+(?:\.\d+)?)s\)\s*=*\s*$`)
	startLine = lazy(`^==\s+(\d+)\s+(\S+):\s+(migrating|reverting)\s*=*\s*$`)
)

// gapLine is the line migrun's bounded capture (runner) puts where it left
// bytes out. Whatever Rails printed there is unknown: a migration begun
// before the gap may have finished inside it.
var gapLine = lazy(`^\[\.\.\. migrun: \d+ bytes omitted \.\.\.\]$`)

// backtraceLine is a frame of Rake's backtrace in a migration file, e.g.
//
//	/app/db/migrate/20240301000000_explode.rb:4:in `up'
//
// (Ruby 3.4 quotes 'Explode#up' instead). Rake prints the app's frames of
// the failed task to stderr; the one migration file among them is the
// migration that raised.
var backtraceLine = lazy(`^\s*(?:from\s+)?\S*db/migrate/(?:\S*/)?([0-9]+)_([_a-z0-9]+)\.rb:\d+:in `)

// maxSeconds keeps a reported duration within time.Duration's range.
const maxSeconds = float64(1<<63-1) / float64(time.Second)

// ParseMigrations returns the migrations that output reports as migrated or
// reverted, in the order they were printed. Lines that merely look alike
// (migrating, a failed migration's header) are not counted.
func ParseMigrations(output string) []Migration {
	done, _ := ParseRun(output)
	return done
}

// ParseRun reads the output of a migration command: done are the
// migrations it reports as migrated or reverted, in the order printed (as
// ParseMigrations); unfinished is the migration Rails began last and did
// not report finished — the one that was running when the command failed
// or was stopped — or nil.
//
// The unfinished migration comes from its "migrating" line; when that is
// not known (VERBOSE=false silences it, or the capture left out the part
// where it would be), from a backtrace frame in a migration file, which
// names the migration that raised wherever it appears. A migration begun
// before a gap in the capture is not reported from its "migrating" line: it
// may have finished in the gap, and a wrong name is worse than none.
//
// For a command that succeeded, unfinished means nothing: ignore it.
func ParseRun(output string) (done []Migration, unfinished *Migration) {
	var fromTrace *Migration
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := doneLine.re().FindStringSubmatch(line); m != nil {
			secs, err := strconv.ParseFloat(m[4], 64)
			if err != nil || secs >= maxSeconds {
				secs = 0 // unknown rather than an overflowed Duration
			}
			done = append(done, Migration{
				Version:  m[1],
				Name:     m[2],
				Action:   m[3],
				Duration: time.Duration(math.Round(secs * float64(time.Second))),
			})
			if unfinished != nil && unfinished.Version == m[1] {
				unfinished = nil
			}
			continue
		}
		if m := startLine.re().FindStringSubmatch(line); m != nil {
			unfinished = &Migration{Version: m[1], Name: m[2], Action: m[3]}
			continue
		}
		if gapLine.re().MatchString(line) {
			unfinished = nil
			continue
		}
		if m := backtraceLine.re().FindStringSubmatch(line); m != nil && fromTrace == nil {
			fromTrace = &Migration{Version: m[1], Name: camelize(m[2])}
		}
	}
	// A scan stopped by a line past the buffer leaves the rest unread:
	// whatever was open may have finished there.
	if sc.Err() != nil {
		return done, nil
	}
	if unfinished == nil && fromTrace != nil && !finished(done, fromTrace.Version) {
		unfinished = fromTrace
	}
	return done, unfinished
}

func finished(done []Migration, version string) bool {
	for _, m := range done {
		if m.Version == version {
			return true
		}
	}
	return false
}
