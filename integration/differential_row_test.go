package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// The machinery of the differential test (differential_test.go): one row is
// one app layout on one database server. A row builds its own copy of the
// Rails app and its own databases, takes migrun's verdicts and then Rails'.

// The two migrations testdata/railsapp carries.
const (
	usersVersion = "20240101000000" // create_users
	indexVersion = "20240102000000" // add_index_to_users_email
)

// appVersions is what a database that has run the app's own migrations holds.
var appVersions = []string{usersVersion, indexVersion}

// Rails' verdicts.
const (
	railsCurrent = "current" // db:abort_if_pending_migrations exits 0
	railsPending = "pending" // it lists pending migrations
	railsRefuses = "refuses" // it fails otherwise (an illegal name, a duplicate, ...)
)

// railsCheck is how the oracle asks Rails. `bundle exec rails` resolves the
// bundle and then execs the app's bin/rails, which sets the same bundle up
// again through config/boot: running bin/rails directly is the same code
// path at two thirds of the cost.
var railsCheck = []string{"bin/rails", "db:abort_if_pending_migrations"}

// diffProcessTimeout bounds every process a row runs: a hang is a finding.
const diffProcessTimeout = 3 * time.Minute

// diffVerdict is one side's answer for a row.
type diffVerdict struct {
	label  string // railsCurrent, railsPending, railsRefuses; current, waits, skipped, ran, error N
	open   bool   // migrun's gate opens: wait exited 0, or run skipped its command
	detail string // the pending versions, the error, or migrun's stated reason
	stderr string // everything migrun (or a refusing Rails) wrote there
}

// nobodyUser is who a row runs migrun and Rails as when it needs file
// permissions to matter (the tests run as root).
var nobodyUser = &syscall.Credential{Uid: 65534, Gid: 65534} // nobody:nogroup

// diffRow is one layout on one server.
type diffRow struct {
	t         *testing.T
	srv       *testdb.Server
	bin       string              // the migrun binary, executable by anyone
	app       string              // the app's directory
	tmp       string              // writable by anyone: HOME, termination logs, moved manifests
	env       map[string]string   // given to Rails and migrun alike
	dbs       map[string]string   // server database by Rails name: primary, animals
	migrunDir string              // migrun's working directory; the app's unless a row says
	user      *syscall.Credential // nil: as the test's own user
	preload   *railsPreloader     // nil: every Rails command a fresh process
	notes     []string
	ran       int // processes run, for unique termination log names
}

func newDiffRow(t *testing.T, srv *testdb.Server, bin string, preload *railsPreloader) *diffRow {
	app := railsApp(t)
	r := &diffRow{t: t, srv: srv, bin: bin, preload: preload, app: app, tmp: t.TempDir(), migrunDir: app,
		env: map[string]string{"RAILS_ENV": "production"}, dbs: map[string]string{}}
	if err := os.Chmod(r.tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	r.addDatabase("primary")
	return r
}

// note records something a reader of the row should know.
func (r *diffRow) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// --- the app's files ------------------------------------------------------

func (r *diffRow) path(rel string) string { return filepath.Join(r.app, rel) }

// write writes a file of the app, making its directories.
func (r *diffRow) write(rel, content string) {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Dir(r.path(rel)), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(r.path(rel), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// mkdir makes a directory of the app.
func (r *diffRow) mkdir(rel string) {
	r.t.Helper()
	if err := os.MkdirAll(r.path(rel), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// railsMigrationName is Rails' MigrationFilenameRegexp.
var railsMigrationName = regexp.MustCompile(`\A([0-9]+)_([_a-z0-9]*)\.?([_a-z0-9]*)?\.rb\z`)

// migration writes a migration file at rel whose class is the one Rails
// expects of its name (when the name is legal), so db:migrate could run it.
func (r *diffRow) migration(rel string) {
	r.t.Helper()
	class := "OddlyNamedMigration"
	if m := railsMigrationName.FindStringSubmatch(filepath.Base(rel)); m != nil {
		class = railsCamelize(m[2])
	}
	r.write(rel, fmt.Sprintf("class %s < ActiveRecord::Migration[6.1]\n  def change\n  end\nend\n", class))
}

// railsCamelize is ActiveSupport's String#camelize, for migration names.
func railsCamelize(name string) string {
	var b strings.Builder
	for _, word := range strings.Split(name, "_") {
		if word != "" {
			b.WriteString(strings.ToUpper(word[:1]) + word[1:])
		}
	}
	return b.String()
}

// remove removes a file or directory of the app.
func (r *diffRow) remove(rel string) {
	r.t.Helper()
	if err := os.RemoveAll(r.path(rel)); err != nil {
		r.t.Fatal(err)
	}
}

// rename moves a file or directory within the app.
func (r *diffRow) rename(from, to string) {
	r.t.Helper()
	r.mkdir(filepath.Dir(to))
	if err := os.Rename(r.path(from), r.path(to)); err != nil {
		r.t.Fatal(err)
	}
}

// symlink makes rel a symbolic link to target (as written, relative or not).
func (r *diffRow) symlink(target, rel string) {
	r.t.Helper()
	r.mkdir(filepath.Dir(rel))
	if err := os.Symlink(target, r.path(rel)); err != nil {
		r.t.Fatal(err)
	}
}

// chmod changes the mode of a file or directory of the app.
func (r *diffRow) chmod(rel string, mode os.FileMode) {
	r.t.Helper()
	if err := os.Chmod(r.path(rel), mode); err != nil {
		r.t.Fatal(err)
	}
}

// fixture copies testdata/differential/<name> to rel in the app.
func (r *diffRow) fixture(name, rel string) {
	r.t.Helper()
	src := filepath.Join("testdata", "differential", name)
	info, err := os.Stat(src)
	if err != nil {
		r.t.Fatal(err)
	}
	if info.IsDir() {
		r.mkdir(filepath.Dir(rel))
		if err := os.CopyFS(r.path(rel), os.DirFS(src)); err != nil {
			r.t.Fatal(err)
		}
		return
	}
	content, err := os.ReadFile(src)
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(rel, string(content))
}

// configure adds lines to the Application class of config/application.rb.
func (r *diffRow) configure(lines ...string) {
	r.t.Helper()
	r.edit("config/application.rb", "    config.load_defaults 6.1\n", "    config.load_defaults 6.1\n    "+strings.Join(lines, "\n    ")+"\n")
}

// edit replaces old, which must be in the file, with new.
func (r *diffRow) edit(rel, old, new string) {
	r.t.Helper()
	content, err := os.ReadFile(r.path(rel))
	if err != nil {
		r.t.Fatal(err)
	}
	if !strings.Contains(string(content), old) {
		r.t.Fatalf("%s lacks %q", rel, old)
	}
	r.write(rel, strings.Replace(string(content), old, new, 1))
}

// engineLock is the Gemfile.lock of the app with the engine, resolved once:
// every row's app has the same Gemfile.
var engineLock struct {
	once sync.Once
	lock []byte
	err  error
}

// engine adds the in-app engine engines/foo, bundled as a path gem and
// required by Bundler.require as in a generated app.
func (r *diffRow) engine() {
	r.t.Helper()
	r.fixture("engine", "engines/foo")
	content, err := os.ReadFile(r.path("Gemfile"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.write("Gemfile", string(content)+"gem \"foo\", path: \"engines/foo\"\n")
	r.edit("config/application.rb", "require \"active_record/railtie\"\n", "require \"active_record/railtie\"\n\nBundler.require(*Rails.groups)\n")
	engineLock.once.Do(func() {
		install := exec.Command("bundle", "install", "--local", "--quiet")
		install.Dir = r.app
		if out, err := install.CombinedOutput(); err != nil {
			engineLock.err = fmt.Errorf("bundle install --local with the engine: %v\n%s", err, out)
			return
		}
		engineLock.lock, engineLock.err = os.ReadFile(r.path("Gemfile.lock"))
	})
	if engineLock.err != nil {
		r.t.Fatal(engineLock.err)
	}
	r.write("Gemfile.lock", string(engineLock.lock))
}

// configMap turns db/migrate into what the kubelet makes of a ConfigMap
// volume: the files in a hidden timestamped directory, ..data a link to it,
// and each file a link through ..data.
func (r *diffRow) configMap() {
	r.t.Helper()
	const stamp = "..2024_01_01_00_00_00.123456789"
	entries, err := os.ReadDir(r.path("db/migrate"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.rename("db/migrate", "db/staging")
	r.rename("db/staging", "db/migrate/"+stamp)
	r.symlink(stamp, "db/migrate/..data")
	for _, e := range entries {
		r.symlink("..data/"+e.Name(), "db/migrate/"+e.Name())
	}
}

// openToAll makes the row run migrun and Rails as the user nobody, and
// lets that user reach and read the app: the test's temporary directories
// are private to root.
func (r *diffRow) openToAll() {
	r.t.Helper()
	for dir := r.app; dir != os.TempDir() && dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			r.t.Fatal(err)
		}
	}
	r.user = nobodyUser
}

// --- the databases ---------------------------------------------------------

// addDatabase creates a database for one of the app's configurations and
// sets the URL Rails takes for it: DATABASE_URL for primary,
// <NAME>_DATABASE_URL for the others.
func (r *diffRow) addDatabase(name string) {
	db, url := r.srv.CreateDatabase(r.t)
	r.dbs[name] = db
	if name == "primary" {
		r.env["DATABASE_URL"] = url
	} else {
		r.env[strings.ToUpper(name)+"_DATABASE_URL"] = url
	}
}

// exec runs statements in one of the app's databases as the app's role, so
// that what they create is the app's, as if Rails had made it.
func (r *diffRow) exec(name, statements string) {
	r.t.Helper()
	if r.srv.Kind() == testdb.KindPostgreSQL {
		statements = "SET ROLE " + testdb.AppUser + "; " + statements
	}
	r.srv.Exec(r.t, r.dbs[name], statements)
}

// applied makes table (schema_migrations, or the name a row configures)
// in one of the app's databases, if it is not there, and inserts versions
// as they are written: odd spellings included.
func (r *diffRow) applied(name, table string, versions ...string) {
	r.t.Helper()
	stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (version varchar(255) NOT NULL PRIMARY KEY)", table)
	if len(versions) > 0 {
		values := make([]string, len(versions))
		for i, v := range versions {
			values[i] = "('" + strings.ReplaceAll(v, "'", "''") + "')"
		}
		stmt += fmt.Sprintf("; INSERT INTO %s (version) VALUES %s", table, strings.Join(values, ", "))
	}
	r.exec(name, stmt)
}

// migrate runs the real `rails db:migrate`, which must succeed.
func (r *diffRow) migrate() {
	r.t.Helper()
	if status, out, errOut := r.command(r.app, r.env, "bin/rails", "db:migrate"); status != 0 {
		r.t.Fatalf("rails db:migrate: exit %d\n%s%s", status, out, errOut)
	}
}

// --- the manifest -----------------------------------------------------------

// manifestFile is where `migrun manifest` writes, relative to the app.
const manifestFile = "db/migrun-manifest.json"

// manifest runs the manifest step (`migrun manifest` in the app with the
// row's environment, which boots Rails to list what it would migrate). On
// a migrun without the step the row says so and goes on without one. A
// step that fails is noted, not failed: the gate must stay shut without
// its manifest, and the invariant checks that.
func (r *diffRow) manifest() {
	r.t.Helper()
	status, _, errOut := r.command(r.app, r.migrunEnv(), r.bin, "manifest")
	switch {
	case status == diffExitUsage && strings.Contains(errOut, `unknown command "manifest"`):
		r.note("manifest step unavailable")
	case status != 0:
		r.note("manifest step failed (exit %d): %s", status, migrunReason(errOut))
		r.t.Logf("migrun manifest exited %d:\n%s", status, errOut)
	default:
		if _, err := os.Stat(r.path(manifestFile)); err != nil {
			r.note("manifest step exited 0 but wrote no %s", manifestFile)
		}
	}
}

// --- the verdicts -------------------------------------------------------------

// diffExitUsage and diffExitTempFail are migrun's documented exit statuses.
const (
	diffExitUsage    = 64
	diffExitTempFail = 75
)

// migrunEnv is the row's environment plus what every migrun run gets.
func (r *diffRow) migrunEnv() map[string]string {
	r.ran++
	env := maps.Clone(r.env)
	env["MIGRUN_TERMINATION_LOG"] = filepath.Join(r.tmp, fmt.Sprintf("termination-log-%d", r.ran))
	env["MIGRUN_CONNECT_TIMEOUT"] = "20s"
	env["MIGRUN_LOCK_TIMEOUT"] = "1m"
	return env
}

// waitVerdict is `migrun wait` with the given timeout: 0 current, 75 not
// current (or cannot tell), anything else an error.
func (r *diffRow) waitVerdict(timeout string) diffVerdict {
	status, errOut := r.wait(timeout)
	v := diffVerdict{detail: migrunReason(errOut), stderr: errOut}
	switch status {
	case 0:
		v.label, v.open = "current", true
	case diffExitTempFail:
		v.label = "waits"
	default:
		v.label = fmt.Sprintf("error %d", status)
	}
	return v
}

func (r *diffRow) wait(timeout string) (status int, stderr string) {
	env := r.migrunEnv()
	env["MIGRUN_WAIT_TIMEOUT"] = timeout
	status, _, stderr = r.command(r.migrunDir, env, r.bin, "wait")
	return status, stderr
}

// commandRan is what the command given to `migrun run` prints.
const commandRan = "COMMAND-RAN"

// skipVerdict is `migrun run --skip-if-current` with a command that only
// says it ran: the gate opens when migrun succeeds without running it.
func (r *diffRow) skipVerdict() diffVerdict {
	status, out, errOut := r.command(r.migrunDir, r.migrunEnv(), r.bin, "run", "--skip-if-current", "--", "sh", "-c", "echo "+commandRan)
	v := diffVerdict{detail: migrunReason(errOut), stderr: errOut}
	switch {
	case strings.Contains(out, commandRan):
		v.label = "ran"
	case status == 0:
		v.label, v.open = "skipped", true
	default:
		v.label = fmt.Sprintf("error %d", status)
	}
	return v
}

// railsVerdict asks Rails itself. Run it last: it creates schema_migrations
// (and ar_internal_metadata) when they are missing.
func (r *diffRow) railsVerdict() diffVerdict {
	status, out, errOut := r.command(r.app, r.env, railsCheck[0], railsCheck[1:]...)
	switch {
	case status == 0:
		return diffVerdict{label: railsCurrent}
	case strings.Contains(out, "pending migration"):
		var versions []string
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0][0] >= '0' && f[0][0] <= '9' {
				versions = append(versions, f[0])
			}
		}
		return diffVerdict{label: railsPending, detail: strings.Join(versions, ", ")}
	}
	return diffVerdict{label: railsRefuses, detail: railsError(errOut), stderr: errOut}
}

// railsError is the error Rake reported after "rails aborted!": its class,
// without the ActiveRecord:: namespace, and its message.
func railsError(stderr string) string {
	var msg []string
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) != "rails aborted!" {
			continue
		}
		for _, l := range lines[i+1:] {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "/") || strings.HasPrefix(l, "Tasks:") || strings.HasPrefix(l, "(See full trace") {
				break
			}
			msg = append(msg, strings.TrimPrefix(l, "ActiveRecord::"))
		}
		break
	}
	if len(msg) == 0 && len(lines) > 0 {
		msg = lines[len(lines)-1:]
	}
	return shortLine(strings.Join(msg, " "))
}

// migrunLogNoise is what a reason does without: the time, the level and
// the app of migrun's text log lines.
var migrunLogNoise = regexp.MustCompile(`(^|\s)(time|level|app)=\S+`)

// migrunMsg is the quoted message of a text log line.
var migrunMsg = regexp.MustCompile(`msg="((?:[^"\\]|\\.)*)"`)

// migrunReason is what migrun said about its decision, in one line: its
// first error, else its first warning, else what it said it waits for,
// else its last line.
func migrunReason(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	pick := func(match func(string) bool) (string, bool) {
		for _, line := range lines {
			if match(line) {
				line = migrunLogNoise.ReplaceAllString(line, "")
				line = migrunMsg.ReplaceAllString(line, "$1:")
				return shortLine(strings.TrimSuffix(strings.TrimSpace(line), ":")), true
			}
		}
		return "", false
	}
	for _, match := range []func(string) bool{
		func(l string) bool { return strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "migrun:") },
		func(l string) bool { return strings.Contains(l, "level=WARN") },
		func(l string) bool { return strings.Contains(l, "pending") },
		func(string) bool { return true },
	} {
		if reason, ok := pick(match); ok {
			return reason
		}
	}
	return ""
}

func shortLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// command runs a program to the end in dir with env added to a minimal
// environment, as the row's user. A run still going at diffProcessTimeout is
// killed and fails the row.
func (r *diffRow) command(dir string, env map[string]string, name string, args ...string) (status int, stdout, stderr string) {
	r.t.Helper()
	environ := map[string]string{"PATH": os.Getenv("PATH"), "HOME": r.tmp, "LANG": "C.UTF-8"}
	maps.Copy(environ, env)
	if name == "bin/rails" && dir == r.app && r.user == nil && r.preload != nil && r.preload.serves(r.app) {
		status, stdout, stderr, cpu := r.preload.run(r.t, r.tmp, dir, environ, append([]string{name}, args...))
		childCPU.add("rails "+args[0]+" (preloaded)", cpu)
		return status, stdout, stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), diffProcessTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	for k, v := range environ {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if r.user != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.user}
	}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if cmd.ProcessState != nil {
		childCPU.add(filepath.Base(name)+" "+args[0], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
	}
	if ctx.Err() != nil {
		r.t.Fatalf("%s %s still running after %s, killed:\n%s", name, strings.Join(args, " "), diffProcessTimeout, errOut.String())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		r.t.Fatalf("%s: %v", name, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// childCPU adds up the CPU time of the processes rows run, by program and
// first argument, to show where the test's time goes.
var childCPU cpuTally

type cpuTally struct {
	mu    sync.Mutex
	byCmd map[string]time.Duration
	runs  map[string]int
}

func (c *cpuTally) add(cmd string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byCmd == nil {
		c.byCmd, c.runs = map[string]time.Duration{}, map[string]int{}
	}
	c.byCmd[cmd] += d
	c.runs[cmd]++
}

func (c *cpuTally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for cmd, d := range c.byCmd {
		parts = append(parts, fmt.Sprintf("%s: %d runs, %s", cmd, c.runs[cmd], d.Round(time.Second)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// publicCopy copies the migrun binary where the user nobody can run it:
// TestMain builds it in a directory private to root.
func publicCopy(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "migrun")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
