package rails

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// migrationRules are the checks whose outcome depends on the app's Rails version.
type migrationRules struct {
	// TimestampLimit, when set, refuses versions at or above it, as Rails
	// 7.2+ does when validate_migration_timestamps is on (the default from
	// load_defaults 7.2): MigrationContext#migrations raises
	// InvalidMigrationTimestampError unless `version.to_i < (Time.now.utc +
	// 1.day).strftime("%Y%m%d%H%M%S").to_i`. See TimestampLimit.
	TimestampLimit string
}

// timestampLimit is the first version Rails 7.2+ refuses at time now.
func timestampLimit(now time.Time) string {
	return now.UTC().Add(24 * time.Hour).Format("20060102150405")
}

// readMigrations reads what one database's glob found the way Rails does
// before it compares anything with the database, and returns the
// migrations sorted by version, and why Rails would refuse to go on, one
// line per problem (an empty list: Rails would accept these files):
//
//   - MigrationContext#migrations raises IllegalMigrationNameError for a
//     name MigrationFilenameRegexp does not match;
//   - Migrator#validate (run by `migration_context.open`, which
//     db:abort_if_pending_migrations and db:migrate call) raises
//     DuplicateMigrationNameError for two migrations whose camelized
//     names are equal, scope ignored, then DuplicateMigrationVersionError
//     for two with one version.
//
// readMigrations also refuses entries Rails counts but could not load when
// migrating (a directory, a dangling symlink), and reports pairs whose
// names differ only in underscores: an inflection acronym anywhere (the
// app, a gem) can make Rails camelize them alike.
func readMigrations(entries []globbed, rules migrationRules) ([]MigrationFile, []string) {
	var files []MigrationFile
	var unsure []string
	for _, e := range entries {
		f, ok := ParseMigrationFilename(filepath.Base(e.Path))
		if !ok {
			unsure = append(unsure, fmt.Sprintf("%s: Rails raises IllegalMigrationNameError for this name (it wants digits, \"_\", then only a-z, 0-9 and \"_\", at most one dot, \".rb\"): rename it", e.Rel))
			continue
		}
		if problem := loadProblem(e.Path); problem != "" {
			unsure = append(unsure, fmt.Sprintf("%s %s: Rails counts it as migration %s and cannot load it; remove it", e.Rel, problem, f.Version()))
			continue
		}
		if rules.TimestampLimit != "" && compareIntegers(f.Version(), rules.TimestampLimit) >= 0 {
			unsure = append(unsure, fmt.Sprintf("%s: version %s is not before %s (now plus one day): Rails 7.2+ raises InvalidMigrationTimestampError when validate_migration_timestamps is on; fix the timestamp", e.Rel, f.Version(), rules.TimestampLimit))
		}
		files = append(files, MigrationFile{Version: f.Version(), Name: camelize(f.Name), Scope: f.Scope, Path: e.Rel})
	}
	slices.SortStableFunc(files, func(a, b MigrationFile) int {
		if c := compareIntegers(a.Version, b.Version); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	unsure = append(unsure, duplicates(files)...)
	return files, unsure
}

// loadProblem says why Rails could not require the entry, or "".
func loadProblem(path string) string {
	info, err := os.Stat(path)
	switch {
	case err != nil:
		if _, lerr := os.Lstat(path); lerr == nil {
			return "is a symlink to nothing migrun can read (" + errText(err) + ")"
		}
		return "cannot be read (" + errText(err) + ")"
	case info.IsDir():
		return "is a directory"
	case !info.Mode().IsRegular():
		return "is not a regular file"
	}
	return ""
}

// duplicates reports what Migrator#validate raises for, and name pairs an
// acronym could make equal.
func duplicates(files []MigrationFile) []string {
	var out []string
	byName := map[string][]MigrationFile{}
	byKey := map[string][]MigrationFile{}
	byVersion := map[string][]MigrationFile{}
	for _, f := range files {
		byName[f.Name] = append(byName[f.Name], f)
		byKey[strings.ToLower(f.Name)] = append(byKey[strings.ToLower(f.Name)], f)
		byVersion[f.Version] = append(byVersion[f.Version], f)
	}
	// In the order of the files, so that messages are stable.
	reported := map[string]bool{}
	for _, f := range files {
		if same := byName[f.Name]; len(same) > 1 && !reported["n"+f.Name] {
			reported["n"+f.Name] = true
			out = append(out, fmt.Sprintf("duplicate migration name %s: %s: Rails raises DuplicateMigrationNameError; rename all but one", f.Name, paths(same)))
		}
		// An inflection acronym (`inflect.acronym "API"`, in the app or in
		// any gem) replaces a capitalized run by the acronym, whose lower
		// case is that run (Inflections#acronym: `@acronyms[word.downcase]
		// = word`). So however Rails camelizes a name, its lower case is
		// the name without underscores: names Rails could camelize alike
		// are exactly those equal in lower case.
		key := strings.ToLower(f.Name)
		if alike := byKey[key]; len(alike) > len(byName[f.Name]) && !reported["k"+key] {
			reported["k"+key] = true
			var names []string
			for _, a := range alike {
				if !slices.Contains(names, a.Name) {
					names = append(names, a.Name)
				}
			}
			out = append(out, fmt.Sprintf("migration names %s differ only in underscores (%s): an inflection acronym makes Rails camelize them alike and raise DuplicateMigrationNameError; rename all but one", strings.Join(names, ", "), paths(alike)))
		}
		if same := byVersion[f.Version]; len(same) > 1 && !reported["v"+f.Version] {
			reported["v"+f.Version] = true
			out = append(out, fmt.Sprintf("duplicate migration version %s: %s: Rails raises DuplicateMigrationVersionError; renumber all but one", f.Version, paths(same)))
		}
	}
	return out
}

func paths(files []MigrationFile) string {
	var p []string
	for _, f := range files {
		p = append(p, f.Path)
	}
	return strings.Join(p, ", ")
}
