package rails

// MigrationFile is a migration the app carries.
type MigrationFile struct {
	Version string // as Rails compares it: the file name's digits read by to_i, e.g. "20240101000000", "1" for 001_init.rb
	Name    string // camelized, as Rails names the migration: "CreateUsers"
	Scope   string // the scope after the name's dot ("animals"), or ""
	Path    string // relative to the app root when below it
}

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
