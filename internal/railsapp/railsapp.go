// Package railsapp gives tests a real Rails app: fresh copies of
// integration/testdata/railsapp (Debian's Rails 6.1), whose bundle is
// resolved offline once per test binary.
package railsapp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once     sync.Once
	template string // the bundled app, in its own temp dir
	setupErr error
)

// source is the app's directory in the repository, found from this file's
// own path so that any package's tests can use it.
func source() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "integration", "testdata", "railsapp")
}

// Template is the bundled app that New copies, made on first use. Tests
// must not change it. Without bundler the test skips, or fails under
// CI=true.
func Template(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if _, err := exec.LookPath("bundle"); err != nil {
			setupErr = fmt.Errorf("bundler is not installed (apt-get install ruby-railties ruby-activerecord ruby-pg ruby-mysql2 bundler rake): %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "migrun-railsapp-")
		if err != nil {
			setupErr = err
			return
		}
		template = filepath.Join(dir, "app")
		if err := os.CopyFS(template, os.DirFS(source())); err != nil {
			setupErr = err
			return
		}
		install := exec.Command("bundle", "install", "--local", "--quiet")
		install.Dir = template
		if out, err := install.CombinedOutput(); err != nil {
			setupErr = fmt.Errorf("bundle install --local: %v\n%s", err, out)
		}
	})
	if setupErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("rails app: %v", setupErr)
		}
		t.Skipf("rails app: %v", setupErr)
	}
	return template
}

// New returns a fresh copy of the app in the test's temp dir.
func New(t testing.TB) string {
	t.Helper()
	tmpl := Template(t)
	app := filepath.Join(t.TempDir(), "app")
	if err := os.CopyFS(app, os.DirFS(tmpl)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(app, "bin", "rails"), 0o755); err != nil {
		t.Fatal(err)
	}
	return app
}

// Remove deletes the template; a TestMain calls it after the tests.
func Remove() {
	if template != "" {
		os.RemoveAll(filepath.Dir(template))
	}
}
