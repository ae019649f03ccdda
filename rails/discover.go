package rails

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// globbed is one entry Rails' migration glob returns.
type globbed struct {
	Path string // the migrations path joined with the entry's path below it
	Rel  string // Path relative to the app root when it is below it, else Path (for messages and the manifest)
}

// globResult is what Rails finds under its migrations paths, and what migrun
// cannot see as Rails does.
type globResult struct {
	Entries []globbed
	// Unsure says, one line each, why this glob may differ from Ruby's:
	// a directory migrun cannot read, a path with glob characters.
	Unsure []string
	// Missing are the paths that are not directories (Rails finds nothing there).
	Missing []string
}

// globChars are the characters Ruby's Dir[] reads as a pattern: a path
// holding one is a pattern to Rails, not a directory name.
const globChars = "*?[]{}\\"

// globMigrations lists what Rails 6.1 to 8.1 find under paths
// (MigrationContext#migration_files):
//
//	Dir[*paths.flat_map { |path| "#{path}/**/[0-9]*_*.rb" }]
//
// with relative paths taken from root, the directory Rails runs in. As
// Ruby 3's glob does (checked with Ruby 3.1, see TestGlobMatchesRuby):
//
//   - a path that is itself a symlink is followed;
//   - "**/" does not descend into symlinked directories, nor into
//     directories whose names start with a dot (".hidden", Kubernetes'
//     "..2024_01_01_…" and "..data");
//   - every entry whose name matches is returned, whatever it is: a file,
//     a symlink (dangling or not), a directory (whose contents are
//     searched too);
//   - nothing is de-duplicated: overlapping paths, or one path given
//     twice, return the same file twice (a duplicate, as in Rails);
//   - a path that does not exist, or is not a directory, holds nothing.
//
// Ruby skips a directory it cannot read without a word; globMigrations
// reports it in Unsure, since Rails (as another user, or after a
// permission fix) may see files there that migrun cannot.
func globMigrations(root string, paths []string) globResult {
	var g globResult
	for _, p := range paths {
		if strings.ContainsAny(p, globChars) {
			g.Unsure = append(g.Unsure, fmt.Sprintf("migrations path %q contains glob characters (%s): Rails would expand it as a pattern; name the directories one by one", p, globChars))
			continue
		}
		if p == "" {
			g.Unsure = append(g.Unsure, "an empty migrations path: Rails would search the file system's root (\"/**/[0-9]*_*.rb\"); remove it")
			continue
		}
		base := p
		if !filepath.IsAbs(base) {
			base = filepath.Join(root, base)
		}
		entries, err := os.ReadDir(base) // follows base if it is a symlink, as Ruby does
		switch {
		case errors.Is(err, fs.ErrNotExist), isNotDir(err):
			g.Missing = append(g.Missing, p)
			continue
		case err != nil:
			g.Unsure = append(g.Unsure, fmt.Sprintf("cannot read migrations path %s: %s: make it readable by migrun's user", p, errText(err)))
			continue
		}
		g.walk(root, base, entries)
	}
	return g
}

// walk adds the matching entries of dir (whose contents are entries), and
// those of its plain subdirectories, skipping dot directories and symlinks.
func (g *globResult) walk(root, dir string, entries []fs.DirEntry) {
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if matchesMigrationGlob(e.Name()) {
			g.Entries = append(g.Entries, globbed{Path: path, Rel: relTo(root, path)})
		}
		// Type comes from readdir's d_type, or lstat: a symlink to a
		// directory is not a directory here, as for Ruby's "**/".
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		sub, err := os.ReadDir(path)
		if err != nil {
			g.Unsure = append(g.Unsure, fmt.Sprintf("cannot read %s: %s: Ruby skips it silently, so migrun cannot tell what Rails would find; make it readable or remove it", relTo(root, path), errText(err)))
			continue
		}
		g.walk(root, path, sub)
	}
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// errText is an error's cause without the path, which callers print.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// relTo is path relative to root when it lies below root, else path.
func relTo(root, path string) string {
	if root == "" {
		return path
	}
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}
