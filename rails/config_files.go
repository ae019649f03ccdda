package rails

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// configFiles lists the files ManifestScript fingerprints (CONFIG_GLOBS
// there): what decides what Rails sees besides the migration files.
func configFiles(root, env string) ([]string, error) {
	files := []string{"Gemfile", "Gemfile.lock", "config/database.yml", "config/application.rb",
		"config/boot.rb", "config/environment.rb", "config/environments/" + env + ".rb"}
	// config/initializers/**/*.rb as Ruby's glob reads it: no dot
	// directories, no symlinked directories below the start.
	dir := filepath.Join(root, "config", "initializers")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && os.IsNotExist(err) {
				return fs.SkipAll
			}
			return err
		}
		name := d.Name()
		if d.IsDir() && path != dir && strings.HasPrefix(name, ".") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".rb") && !strings.HasPrefix(name, ".") {
			rel, _ := filepath.Rel(root, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	return files, err
}

// ConfigFingerprint is what ManifestScript records as config_files: the
// SHA-256 of each file that decides what Rails sees, by its path relative
// to root, for the environment env.
func ConfigFingerprint(root, env string) (map[string]string, error) {
	sums := map[string]string{}
	candidates, err := configFiles(root, env)
	if err != nil {
		return nil, err
	}
	for _, rel := range candidates {
		sum, err := fileSHA256(filepath.Join(root, filepath.FromSlash(rel)))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sums[rel] = sum
	}
	return sums, nil
}

// configDrift says which of the files that decide what Rails sees differ
// from when the manifest was written (changed, added or gone): a prefix
// added to config/application.rb, an engine added to the Gemfile, a
// database.yml mounted from a ConfigMap.
func configDrift(root, env string, recorded map[string]string) ([]string, error) {
	now, err := ConfigFingerprint(root, env)
	if err != nil {
		return nil, err
	}
	var drift []string
	for _, rel := range slices.Sorted(maps.Keys(recorded)) {
		switch sum, ok := now[rel]; {
		case !ok:
			drift = append(drift, rel+" is gone")
		case sum != recorded[rel]:
			drift = append(drift, rel+" changed")
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(now)) {
		if _, ok := recorded[rel]; !ok {
			drift = append(drift, rel+" is new")
		}
	}
	return drift, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
