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
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Migration is one migration Rails reported.
type Migration struct {
	Version  string        // e.g. "20240101000000"
	Name     string        // e.g. "CreateUsers"
	Action   string        // "migrated" or "reverted"
	Duration time.Duration // as Rails reported it
}

// doneLine matches the line ActiveRecord::Migration#announce prints when a
// migration has finished, e.g.
//
//	== 20240101000000 CreateUsers: migrated (0.0046s) =============================
var doneLine = regexp.MustCompile(`^==\s+(\d+)\s+(\S+):\s+(migrated|reverted)\s+\((\d+(?:\.\d+)?)s\)\s*=*\s*$`)

// maxSeconds keeps a reported duration within time.Duration's range.
const maxSeconds = float64(1<<63-1) / float64(time.Second)

// ParseMigrations returns the migrations that output reports as migrated or
// reverted, in the order they were printed. Lines that merely look alike
// (migrating, a failed migration's header) are not counted.
func ParseMigrations(output string) []Migration {
	var found []Migration
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		m := doneLine.FindStringSubmatch(strings.TrimRight(sc.Text(), "\r"))
		if m == nil {
			continue
		}
		secs, err := strconv.ParseFloat(m[4], 64)
		if err != nil || secs > maxSeconds {
			secs = 0 // unknown rather than an overflowed Duration
		}
		found = append(found, Migration{
			Version:  m[1],
			Name:     m[2],
			Action:   m[3],
			Duration: time.Duration(secs * float64(time.Second)),
		})
	}
	return found
}
