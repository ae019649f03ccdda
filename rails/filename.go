package rails

import (
	"strings"
)

// migrationFilenameRegexp is Rails' ActiveRecord::Migration::MigrationFilenameRegexp,
// unchanged from 6.1 to 8.1 (activerecord/lib/active_record/migration.rb):
//
//	MigrationFilenameRegexp = /\A([0-9]+)_([_a-z0-9]*)\.?([_a-z0-9]*)?\.rb\z/
//
// MigrationContext#parse_migration_filename scans a globbed file's
// basename with it; #migrations raises IllegalMigrationNameError for a
// name it does not match. RE2's leftmost-first submatches are Ruby's for
// this expression (no alternation; greedy groups). ParseMigrationFilename
// is the same rule by hand; the tests and FuzzParseMigrationFilename hold
// it to this expression.
var migrationFilenameRegexp = lazy(`\A([0-9]+)_([_a-z0-9]*)\.?([_a-z0-9]*)?\.rb\z`)

// MigrationFilename is what Rails reads from a migration file's name
// 20240101000000_create_users.rb (or 20240101000000_create_dogs.animals.rb).
type MigrationFilename struct {
	Digits string // the version as written: "20240101000000", "001"
	Name   string // "create_users": camelized, the migration's name
	Scope  string // "animals", or ""
}

// Version is the version as Rails compares it (the digits' to_i).
func (f MigrationFilename) Version() string { return RubyToI(f.Digits) }

// ParseMigrationFilename reads a migration file's basename as Rails'
// MigrationFilenameRegexp does. It reports false for a name Rails rejects
// with IllegalMigrationNameError (capitals, dashes, a letter after the
// digits, two dots, ...) once its glob has found it.
func ParseMigrationFilename(base string) (MigrationFilename, bool) {
	rest, ok := strings.CutSuffix(base, ".rb")
	if !ok {
		return MigrationFilename{}, false
	}
	digits := 0
	for digits < len(rest) && isDigit(rest[digits]) {
		digits++
	}
	if digits == 0 || digits == len(rest) || rest[digits] != '_' {
		return MigrationFilename{}, false
	}
	f := MigrationFilename{Digits: rest[:digits]}
	// ([_a-z0-9]*)\.?([_a-z0-9]*)? on what is left: the name runs to the
	// first dot; at most one dot; the scope is the rest.
	f.Name, f.Scope, _ = strings.Cut(rest[digits+1:], ".")
	if !isNameRun(f.Name) || !isNameRun(f.Scope) {
		return MigrationFilename{}, false
	}
	return f, true
}

// isNameRun reports whether s is [_a-z0-9]*.
func isNameRun(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || isDigit(c)) {
			return false
		}
	}
	return true
}

// matchesMigrationGlob reports whether a directory entry's name matches the
// last part of Rails' glob "#{path}/**/[0-9]*_*.rb": a digit first, an
// underscore after it, ".rb" at the end (case-sensitive, as Ruby's glob on
// Linux). Entries of every type match: Ruby returns directories and
// symlinks too.
func matchesMigrationGlob(name string) bool {
	if len(name) < len("0_.rb") || !isDigit(name[0]) || !strings.HasSuffix(name, ".rb") {
		return false
	}
	return strings.Contains(name[1:len(name)-len(".rb")], "_")
}
