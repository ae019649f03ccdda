package rails

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// This file reads an app's text for what would make Rails look for
// migrations, or for schema_migrations, somewhere migrun was not told. It
// never runs Ruby: it finds the words, and the caller refuses to guess.

// isRailsApp reports whether root holds a Rails app.
func isRailsApp(root string) bool {
	for _, f := range []string{"config/application.rb", "config/environment.rb"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			return true
		}
	}
	return false
}

// rubySettings are the words in the app's Ruby configuration that change
// where Rails looks, each with where it was seen ("config/application.rb:12").
type rubySettings struct {
	TablePrefix     []string // table_name_prefix
	TableSuffix     []string // table_name_suffix
	TableName       []string // schema_migrations_table_name
	MigrationsPaths []string // migrations_paths, or paths["db/migrate"] and the like
	Unreadable      []string
}

// rubyConfigFiles are the files Rails loads while it configures the app
// for env: config/*.rb, config/environments/<env>.rb and every
// config/initializers/**/*.rb.
func rubyConfigFiles(root, env string) ([]string, []string) {
	var files, unreadable []string
	top, _ := filepath.Glob(filepath.Join(root, "config", "*.rb"))
	files = append(files, top...)
	envFile := filepath.Join(root, "config", "environments", env+".rb")
	if _, err := os.Stat(envFile); err == nil {
		files = append(files, envFile)
	}
	initializers := filepath.Join(root, "config", "initializers")
	_ = filepath.WalkDir(initializers, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			if path != initializers || !os.IsNotExist(err) {
				unreadable = append(unreadable, relTo(root, path))
			}
		case !d.IsDir() && strings.HasSuffix(path, ".rb"):
			files = append(files, path)
		}
		return nil
	})
	slices.Sort(files)
	return files, unreadable
}

// scanRubyConfig finds the settings in the app's Ruby configuration. Full
// comment lines and =begin/=end blocks are skipped; anything else counts,
// a string or a trailing comment included: migrun cannot evaluate Ruby.
func scanRubyConfig(root, env string) rubySettings {
	var s rubySettings
	files, unreadable := rubyConfigFiles(root, env)
	s.Unreadable = unreadable
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			s.Unreadable = append(s.Unreadable, relTo(root, f))
			continue
		}
		inBlock := false
		for i, line := range strings.Split(string(data), "\n") {
			trimmed := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "=begin"):
				inBlock = true
				continue
			case strings.HasPrefix(line, "=end"):
				inBlock = false
				continue
			case inBlock || strings.HasPrefix(trimmed, "#"):
				continue
			}
			where := fmt.Sprintf("%s:%d", relTo(root, f), i+1)
			if strings.Contains(line, "table_name_prefix") {
				s.TablePrefix = append(s.TablePrefix, where)
			}
			if strings.Contains(line, "table_name_suffix") {
				s.TableSuffix = append(s.TableSuffix, where)
			}
			if strings.Contains(line, "schema_migrations_table_name") {
				s.TableName = append(s.TableName, where)
			}
			if strings.Contains(line, "migrations_paths") || strings.Contains(line, "db/migrate") {
				s.MigrationsPaths = append(s.MigrationsPaths, where)
			}
		}
	}
	return s
}

var (
	// gemPathOption is a gem's path: option: `path: "x"`, `:path => 'x'`.
	gemPathOption = lazy(`(?:\bpath:|:path\s*=>)\s*(?:"([^"]*)"|'([^']*)')`)
	// gemPathBlock is a path source block: `path "components" do`.
	gemPathBlock = lazy(`^\s*path\s*\(?\s*(?:"([^"]*)"|'([^']*)')`)
)

// pathEngines lists the Gemfile's path gems (`gem "x", path: "engines/x"`,
// `path "components" do … end`) whose directory has a db/migrate: an
// engine there may add it to Rails' migrations paths (the usual
// `initializer :append_migrations`), which only Rails can tell.
func pathEngines(root string) (engines []string, doubts []string) {
	data, err := os.ReadFile(filepath.Join(root, "Gemfile"))
	if err != nil {
		if !os.IsNotExist(err) {
			doubts = append(doubts, "cannot read Gemfile: "+errText(err))
		}
		return nil, doubts
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		where := fmt.Sprintf("Gemfile:%d", i+1)
		var dirs []string
		var block bool
		if m := gemPathBlock.re().FindStringSubmatch(line); m != nil {
			dirs, block = []string{m[1] + m[2]}, true
		} else if m := gemPathOption.re().FindStringSubmatch(line); m != nil {
			dirs = []string{m[1] + m[2]}
		} else if strings.Contains(line, "path:") || strings.Contains(line, ":path") || strings.HasPrefix(strings.TrimSpace(line), "path ") {
			doubts = append(doubts, where+": a path gem whose path migrun cannot read")
		}
		for _, dir := range dirs {
			if strings.Contains(dir, "#{") {
				doubts = append(doubts, where+": a path gem whose path is computed")
				continue
			}
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(root, dir)
			}
			if !block && filepath.Clean(dir) == filepath.Clean(root) {
				continue // the app itself (path: "."): its db/migrate is the app's
			}
			// A path block's gems are found as Bundler looks for their
			// gemspecs: in the directory and two levels below it.
			candidates := []string{filepath.Join(dir, "db", "migrate")}
			if block {
				for _, pattern := range []string{"*", "*/*"} {
					more, _ := filepath.Glob(filepath.Join(dir, pattern, "db", "migrate"))
					candidates = append(candidates, more...)
				}
			}
			for _, c := range candidates {
				if _, err := os.Stat(c); err == nil {
					engines = append(engines, fmt.Sprintf("%s: path gem %s has %s", where, relTo(root, filepath.Dir(filepath.Dir(c))), relTo(root, c)))
				}
			}
		}
	}
	return engines, doubts
}

// gemfileLockVersion is the version of gem in Gemfile.lock's specs, or "".
func gemfileLockVersion(root, gem string) string {
	data, err := os.ReadFile(filepath.Join(root, "Gemfile.lock"))
	if err != nil {
		return ""
	}
	prefix := "    " + gem + " ("
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), prefix); ok {
			v, _, _ = strings.Cut(v, ")")
			return v
		}
	}
	return ""
}

// versionBefore reports whether a gem version (7.1.3, 8.0.0.rc1) is
// known to be before major.minor.
func versionBefore(version string, major, minor int) bool {
	parts := strings.Split(version, ".")
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}
