package rails

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ManifestScript is the Ruby script that writes the manifest: Rails' own
// list of the migrations db:abort_if_pending_migrations checks, per
// database. Run at image build time from the app's root:
//
//	bin/rails runner migrun-manifest.rb [OUTPUT]   # default db/migrun-manifest.json
//
// It connects to no database; it fails (non-zero) when Rails refuses the
// migrations, so the build stops. Rails 6.1 to 8.x.
//
//go:embed manifest.rb
var ManifestScript []byte

// ManifestFormat is the manifest format this migrun reads and ManifestScript writes.
const ManifestFormat = 1

// DefaultManifest is where the manifest is looked for, relative to the app root.
const DefaultManifest = "db/migrun-manifest.json"

// Manifest is what ManifestScript writes.
type Manifest struct {
	Format       int                `json:"format"`
	Generator    string             `json:"generator"`
	RailsVersion string             `json:"rails_version"`
	Environment  string             `json:"environment"`
	Root         string             `json:"root"` // the app root at build time, for messages
	Databases    []ManifestDatabase `json:"databases"`
	// DynamicSettings are database.yml lines whose ERB can give other
	// databases or settings at deploy time than at build time.
	DynamicSettings []ManifestNote `json:"dynamic_settings"`
	// ConfigFiles are the files that decide what Rails sees (Gemfile,
	// Gemfile.lock, config/database.yml, config/application.rb, boot.rb,
	// environment.rb, environments/<env>.rb, initializers/**/*.rb),
	// relative to the app root, with their SHA-256 in hex.
	ConfigFiles map[string]string `json:"config_files"`
}

// ManifestDatabase is one database db:abort_if_pending_migrations checks.
type ManifestDatabase struct {
	Name            string         `json:"name"`
	Adapter         *string        `json:"adapter"`
	MigrationsPaths []ManifestPath `json:"migrations_paths"`
	// SchemaMigrationsTable is the full name, prefix and suffix included.
	SchemaMigrationsTable string `json:"schema_migrations_table"`
	// SchemaSearchPath is the config's schema_search_path (or schema_order).
	SchemaSearchPath *string `json:"schema_search_path"`
	// SearchPathVariable is variables: search_path:, SET after it.
	SearchPathVariable *string             `json:"search_path_variable"`
	Migrations         []ManifestMigration `json:"migrations"`
}

// ManifestPath is one migrations path.
type ManifestPath struct {
	Configured string `json:"configured"` // as Rails has it
	Path       string `json:"path"`       // relative to the app root when below it
	Directory  bool   `json:"directory"`  // it was a directory at build time
}

// ManifestMigration is one migration as Rails' MigrationProxy has it.
type ManifestMigration struct {
	Version string `json:"version"`
	Name    string `json:"name"` // camelized by Rails, acronyms included
	Scope   string `json:"scope"`
	File    string `json:"file"` // relative to the app root when below it
}

// ManifestNote is a database.yml line the manifest cannot vouch for.
type ManifestNote struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Setting string `json:"setting"` // "erb" (control flow, keys from ERB) or the setting's name
}

// maxManifest bounds what ReadManifest reads: far above any real app.
const maxManifest = 64 << 20

// ReadManifest reads and validates a manifest.
func ReadManifest(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifest {
		return nil, fmt.Errorf("larger than %d MiB", maxManifest>>20)
	}
	return ParseManifest(data)
}

// ParseManifest decodes and validates a manifest.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a migrun manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a migrun manifest: data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks that the manifest is one ManifestScript could have
// written: its format, and every migration consistent with its file's name.
func (m *Manifest) Validate() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("manifest format %d, this migrun reads format %d: regenerate it with this migrun's script", m.Format, ManifestFormat)
	}
	if m.ConfigFiles == nil {
		return errors.New("manifest without config_files (written by an older migrun): regenerate it with this migrun's script")
	}
	if m.Environment == "" || m.RailsVersion == "" {
		return errors.New("manifest without environment or rails_version")
	}
	if len(m.Databases) == 0 {
		return errors.New("manifest lists no database")
	}
	names := map[string]bool{}
	for _, db := range m.Databases {
		if db.Name == "" || names[db.Name] {
			return fmt.Errorf("manifest database name %q is empty or repeated", db.Name)
		}
		names[db.Name] = true
		if db.SchemaMigrationsTable == "" {
			return fmt.Errorf("manifest database %s: no schema_migrations_table", db.Name)
		}
		if len(db.MigrationsPaths) == 0 {
			return fmt.Errorf("manifest database %s: no migrations path", db.Name)
		}
		for _, p := range db.MigrationsPaths {
			if p.Path == "" {
				return fmt.Errorf("manifest database %s: an empty migrations path", db.Name)
			}
		}
		files := map[string]bool{}
		for _, mig := range db.Migrations {
			if err := mig.validate(); err != nil {
				return fmt.Errorf("manifest database %s: %w", db.Name, err)
			}
			if files[mig.File] {
				return fmt.Errorf("manifest database %s: file %s listed twice", db.Name, mig.File)
			}
			files[mig.File] = true
		}
	}
	return nil
}

// validate checks a migration against its file's name: Rails derived
// version, name and scope from it (the name camelized, perhaps with
// acronyms, so compared in lower case without underscores).
func (mig ManifestMigration) validate() error {
	f, ok := ParseMigrationFilename(filepath.Base(mig.File))
	switch {
	case mig.File == "":
		return errors.New("a migration without a file")
	case !ok:
		return fmt.Errorf("%s is not a migration file name", mig.File)
	case f.Version() != mig.Version:
		return fmt.Errorf("%s: version %q, but the file name says %s", mig.File, mig.Version, f.Version())
	case strings.ToLower(mig.Name) != strings.ReplaceAll(f.Name, "_", "") || f.Scope != mig.Scope:
		return fmt.Errorf("%s: name %q scope %q do not match the file name", mig.File, mig.Name, mig.Scope)
	}
	return nil
}
