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
	Version string // the leading digits, without leading zeros, as Rails compares them
	Path    string
}

// MigrationFiles lists the migrations under dirs the way Rails finds them:
// files matching [0-9]*_*.rb anywhere below each directory, the version
// being the file name's leading digits read as an integer. A directory that
// does not exist holds no migrations, as in Rails. The result is sorted by
// version; a version found twice is an error, as Rails raises
// DuplicateMigrationVersionError.
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
			version, ok := ParseMigrationFilename(d.Name())
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
	slices.SortFunc(files, func(a, b MigrationFile) int { return compareVersions(a.Version, b.Version) })
	return files, nil
}

// ParseMigrationFilename returns the version of a migration file name such
// as 20240101000000_create_users.rb (or 20240101000000_create_users.animals.rb
// for a scoped one), and whether the name is a migration at all.
func ParseMigrationFilename(name string) (string, bool) {
	if !strings.HasSuffix(name, ".rb") {
		return "", false
	}
	digits := 0
	for digits < len(name) && name[digits] >= '0' && name[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits >= len(name) || name[digits] != '_' {
		return "", false
	}
	return NormalizeVersion(name[:digits]), true
}

// NormalizeVersion writes a version the way Ruby's to_i then to_s would:
// digits without leading zeros ("0" for none). Non-digits after the leading
// digits are ignored, as to_i ignores them.
func NormalizeVersion(v string) string {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	v = strings.TrimLeft(v[:end], "0")
	if v == "" {
		return "0"
	}
	return v
}

// compareVersions orders normalized versions numerically, whatever their length.
func compareVersions(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// Pending returns the migration files whose versions are not in applied
// (schema_migrations' version column, in any form Rails stores).
func Pending(files []MigrationFile, applied []string) []MigrationFile {
	done := make(map[string]bool, len(applied))
	for _, v := range applied {
		done[NormalizeVersion(v)] = true
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
