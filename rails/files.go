package rails

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// MigrationFile is a migration the app carries.
type MigrationFile struct {
	Version string // as Rails compares it: the file name's digits read by to_i, e.g. "20240101000000", "1" for 001_init.rb
	Name    string // camelized, as Rails names the migration: "CreateUsers"
	Scope   string // the scope after the name's dot ("animals"), or ""
	Path    string // relative to the app root when below it
}

// MigrationFiles lists the migrations under dirs: files matching
// [0-9]*_*.rb anywhere below each directory.
//
// Superseded by pending.Gate (Analyze here), which
// cmd/migrun is to use instead: it neither finds what Rails finds
// (symlinks, dot directories) nor refuses what Rails refuses (illegal
// names, duplicate names).
func MigrationFiles(dirs []string) ([]MigrationFile, error) {
	var files []MigrationFile
	seen := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && path == dir {
					return fs.SkipAll
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			version, ok := legacyVersion(d.Name())
			if !ok {
				return nil
			}
			if other, dup := seen[version]; dup {
				return fmt.Errorf("migration version %s is in both %s and %s", version, other, path)
			}
			seen[version] = path
			files = append(files, MigrationFile{Version: version, Path: path})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read migrations in %s: %w", dir, err)
		}
	}
	slices.SortFunc(files, func(a, b MigrationFile) int { return compareIntegers(a.Version, b.Version) })
	return files, nil
}

// legacyVersion is MigrationFiles' lenient reading of a file name.
func legacyVersion(name string) (string, bool) {
	if !strings.HasSuffix(name, ".rb") {
		return "", false
	}
	digits := 0
	for digits < len(name) && isDigit(name[digits]) {
		digits++
	}
	if digits == 0 || digits >= len(name) || name[digits] != '_' {
		return "", false
	}
	return RubyToI(name[:digits]), true
}

// NormalizeVersion writes a version the way Ruby's to_i then to_s would.
//
// Superseded by RubyToI, which it calls.
func NormalizeVersion(v string) string { return RubyToI(v) }

// Pending returns the migration files whose versions are not in applied
// (schema_migrations' version column, in any form Rails stores), in the
// order of files. Rails' Migrator#pending_migrations: `migrations.reject
// { |m| already_migrated.include?(m.version) }`, already_migrated being
// the column's values read with to_i.
func Pending(files []MigrationFile, applied []string) []MigrationFile {
	done := make(map[string]bool, len(applied))
	for _, v := range applied {
		done[RubyToI(v)] = true
	}
	var pending []MigrationFile
	for _, f := range files {
		if !done[f.Version] {
			pending = append(pending, f)
		}
	}
	return pending
}

// ResolvePaths makes relative migration directories relative to root.
//
// Superseded: Analyze takes the root itself.
func ResolvePaths(root string, dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		if filepath.IsAbs(d) || root == "" {
			out[i] = d
		} else {
			out[i] = filepath.Join(root, d)
		}
	}
	return out
}
