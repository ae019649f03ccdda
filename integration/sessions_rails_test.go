package integration

import (
	"context"
	"database/sql"
	"maps"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/sessions"
)

// These tests run Rails directly (`bundle exec rails db:migrate`) with the
// environment sessions.Apply builds, as migrun will run it, and read back
// from the migration's own session what reached it.

// sessionsEnv is a Rails run's environment: a minimal one, the database
// URL and extra, passed through sessions.Apply. It returns Apply's notes.
func sessionsEnv(t *testing.T, url string, extra map[string]string, s sessions.Settings, pg sessions.Postgres) (map[string]string, []string) {
	t.Helper()
	env := map[string]string{
		"PATH":         os.Getenv("PATH"),
		"HOME":         os.Getenv("HOME"),
		"RAILS_ENV":    "production",
		"DATABASE_URL": url,
	}
	maps.Copy(env, extra)
	out, notes := sessions.Apply(env, s, pg)
	for _, n := range notes {
		t.Logf("start-up note: %s", n)
	}
	return out, notes
}

// probe asks the PostgreSQL server behind url whether startup options reach it.
func probe(t *testing.T, url string) sessions.Postgres {
	t.Helper()
	u, err := dburl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pg, err := sessions.Probe(ctx, u)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return pg
}

// railsRun is one `bundle exec rails db:migrate` in progress.
type railsRun struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
}

// startRails starts the migration in app with exactly env; the test's end
// kills it if it still runs.
func startRails(t *testing.T, app string, env map[string]string) *railsRun {
	t.Helper()
	r := &railsRun{cmd: exec.Command("bundle", "exec", "rails", "db:migrate"), done: make(chan struct{})}
	r.cmd.Dir = app
	for k, v := range env {
		r.cmd.Env = append(r.cmd.Env, k+"="+v)
	}
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start rails: %v", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	})
	return r
}

// wait waits for the run to end and returns its exit status; a run still
// going after d fails the test.
func (r *railsRun) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("rails still running after %s:\n%s%s", d, r.stdout.String(), r.stderr.String())
		return -1
	}
}

// migrate runs the migration to its end (within two minutes).
func migrate(t *testing.T, app string, env map[string]string) (status int, stdout, stderr string) {
	t.Helper()
	r := startRails(t, app, env)
	status = r.wait(t, 2*time.Minute)
	return status, r.stdout.String(), r.stderr.String()
}

// sessionValues reads the "SESSION name=value" lines a migration printed.
func sessionValues(out string) map[string]string {
	values := map[string]string{}
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "SESSION "); ok {
			k, v, _ := strings.Cut(rest, "=")
			values[k] = v
		}
	}
	return values
}

// showSettings is a migration printing the named settings of its session.
func showSettings(query string, names ...string) string {
	return `  def up
    %w[` + strings.Join(names, " ") + `].each do |name|
      puts "SESSION #{name}=#{select_value("` + query + `")}"
    end
  end`
}

var pgSessionSettings = []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
	"tcp_user_timeout", "client_connection_check_interval", "lock_timeout", "statement_timeout", "search_path"}

func assertValues(t *testing.T, got, want map[string]string, stdout, stderr string) {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("the migration printed no settings:\n%s%s", stdout, stderr)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("the migration's session has %s = %q, want %q", k, got[k], v)
		}
	}
}

// TestSessionsPostgresSettingsReachRails: the PGOPTIONS Apply builds
// reaches the Rails migration's own session through libpq; the app's own
// PGOPTIONS and a URL's options parameter are handled as documented.
func TestSessionsPostgresSettingsReachRails(t *testing.T) {
	srv := testdb.Postgres(t)
	both := sessions.Settings{DeadClientTimeout: 30 * time.Second, LockTimeout: 5 * time.Second}
	// SHOW gives the TCP settings without units: seconds, and milliseconds for tcp_user_timeout.
	applied := map[string]string{
		"tcp_keepalives_idle": "14", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "5",
		"tcp_user_timeout": "28000", "client_connection_check_interval": "1s", "lock_timeout": "5s", "statement_timeout": "0",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		m = maps.Clone(m)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name      string
		query     string // appended to the URL
		extra     map[string]string
		apply     bool
		want      map[string]string
		wantNotes []string
	}{
		{name: "applied", apply: true, want: applied},
		{name: "control: nothing applied", want: map[string]string{"tcp_keepalives_idle": "7200", "tcp_user_timeout": "0", "client_connection_check_interval": "0", "lock_timeout": "0"}},
		{
			name: "the app's PGOPTIONS is kept and its own names win", apply: true,
			extra:     map[string]string{"PGOPTIONS": `-c search_path=app,\ public -c lock_timeout=7s`},
			want:      with(applied, "lock_timeout", "7s", "search_path", "app, public"),
			wantNotes: []string{"PGOPTIONS already sets lock_timeout: the app's value kept"},
		},
		{
			// Why Apply never appends a name the app set: the server takes the last.
			name: "control: repeated names, the last wins", extra: map[string]string{"PGOPTIONS": "-c lock_timeout=7s -c lock_timeout=5s"},
			want: map[string]string{"lock_timeout": "5s"},
		},
		{
			// libpq takes the URL's options parameter over PGOPTIONS.
			name: "control: a URL's options parameter hides PGOPTIONS", query: "?options=-c%20search_path%3Dpublic",
			extra: map[string]string{"PGOPTIONS": "-c lock_timeout=5s"}, want: map[string]string{"lock_timeout": "0"},
		},
		{name: "a URL's options parameter gets them too", query: "?options=-c%20search_path%3Dpublic", apply: true, want: applied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			addMigration(t, app, "20240301000000", "show_settings", showSettings("SHOW #{name}", pgSessionSettings...))
			_, url := srv.CreateDatabase(t)
			url += tt.query
			var env map[string]string
			var notes []string
			if tt.apply {
				env, notes = sessionsEnv(t, url, tt.extra, both, probe(t, url))
			} else {
				env, _ = sessionsEnv(t, url, tt.extra, sessions.Settings{}, sessions.Postgres{})
			}
			status, stdout, stderr := migrate(t, app, env)
			if status != 0 {
				t.Fatalf("rails exited %d:\n%s%s", status, stdout, stderr)
			}
			assertValues(t, sessionValues(stdout), tt.want, stdout, stderr)
			if len(notes) != len(tt.wantNotes) {
				t.Errorf("notes %q, want %q", notes, tt.wantNotes)
			}
			for i := range min(len(notes), len(tt.wantNotes)) {
				if !strings.Contains(notes[i], tt.wantNotes[i]) {
					t.Errorf("note %q, want %q", notes[i], tt.wantNotes[i])
				}
			}
		})
	}
}

// TestSessionsMariaDBSettingsReachRails: init_command as a DATABASE_URL
// query parameter reaches the mysql2 migration's session (Rails
// percent-decodes query values, %20 is a space); the dead-client bound
// leaves wait_timeout alone (it would end live idle sessions too); an app's
// own wait_timeout parameter is what Rails sets, after init_command ran.
func TestSessionsMariaDBSettingsReachRails(t *testing.T) {
	srv := testdb.MariaDB(t)
	tests := []struct {
		name     string
		settings sessions.Settings
		query    string
		want     map[string]string
	}{
		{name: "applied", settings: sessions.Settings{DeadClientTimeout: 30 * time.Second, LockTimeout: 5 * time.Second},
			want: map[string]string{"wait_timeout": "2147483", "lock_wait_timeout": "5"}},
		{name: "the app's own wait_timeout", query: "?wait_timeout=600",
			want: map[string]string{"wait_timeout": "600"}},
		{name: "rounded up", settings: sessions.Settings{LockTimeout: 1500 * time.Millisecond},
			want: map[string]string{"wait_timeout": "2147483", "lock_wait_timeout": "2"}},
		// Rails' defaults: its own wait_timeout, the server's lock_wait_timeout (a day).
		{name: "control: nothing applied", want: map[string]string{"wait_timeout": "2147483", "lock_wait_timeout": "86400"}},
		// init_command cannot set wait_timeout: Rails sets it afterwards.
		{name: "control: init_command cannot set wait_timeout", query: "?init_command=SET%20@@SESSION.wait_timeout%3D9",
			want: map[string]string{"wait_timeout": "2147483"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := railsApp(t)
			addMigration(t, app, "20240301000000", "show_settings", showSettings("SELECT @@SESSION.#{name}", "wait_timeout", "lock_wait_timeout"))
			_, url := srv.CreateDatabase(t)
			env, _ := sessionsEnv(t, url+tt.query, nil, tt.settings, sessions.Postgres{})
			status, stdout, stderr := migrate(t, app, env)
			if status != 0 {
				t.Fatalf("rails exited %d:\n%s%s", status, stdout, stderr)
			}
			assertValues(t, sessionValues(stdout), tt.want, stdout, stderr)
		})
	}
}

// pgConn connects to url (a Rails URL) for the test's own statements.
func pgConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	return namedPgConn(t, url, "sessions-test")
}

// myConn connects to url (a Rails URL) for the test's own statements.
func myConn(t *testing.T, url string) *sql.Conn {
	t.Helper()
	return namedMyConn(t, url, "sessions-test")
}

func pgExec(t *testing.T, conn *pgx.Conn, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func myExec(t *testing.T, conn *sql.Conn, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// TestSessionsDatabaseYAML: what Apply cannot see. A database.yml whose
// entry has its own url: makes Rails ignore DATABASE_URL, so the MySQL
// query parameters never arrive (PGOPTIONS still does: libpq reads it
// whatever the configuration); a database.yml variables: entry is SET by
// Rails after mysql2's init_command ran, so it wins.
func TestSessionsDatabaseYAML(t *testing.T) {
	both := sessions.Settings{DeadClientTimeout: 30 * time.Second, LockTimeout: 5 * time.Second}
	tests := []struct {
		name string
		kind string
		yaml string
		want map[string]string
	}{
		{
			name: "mysql2: url from another variable", kind: testdb.KindMariaDB,
			yaml: `  url: <%= ENV["APP_DATABASE"] %>`,
			want: map[string]string{"wait_timeout": "2147483", "lock_wait_timeout": "86400"},
		},
		{
			name: "mysql2: variables in database.yml win over init_command", kind: testdb.KindMariaDB,
			yaml: "  variables:\n    lock_wait_timeout: 60",
			want: map[string]string{"wait_timeout": "2147483", "lock_wait_timeout": "60"},
		},
		{
			name: "postgresql: url from another variable", kind: testdb.KindPostgreSQL,
			yaml: `  url: <%= ENV["APP_DATABASE"] %>`,
			want: map[string]string{"lock_timeout": "5s", "tcp_user_timeout": "28000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := servers(t)[tt.kind]
			app := railsApp(t)
			yaml := "production:\n  pool: 5\n" + tt.yaml + "\n"
			if err := os.WriteFile(app+"/config/database.yml", []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, url := srv.CreateDatabase(t)
			query, names := "SELECT @@SESSION.#{name}", []string{"wait_timeout", "lock_wait_timeout"}
			var pg sessions.Postgres
			if tt.kind == testdb.KindPostgreSQL {
				query, names, pg = "SHOW #{name}", []string{"lock_timeout", "tcp_user_timeout"}, probe(t, url)
			}
			addMigration(t, app, "20240301000000", "show_settings", showSettings(query, names...))
			env, notes := sessionsEnv(t, url, map[string]string{"APP_DATABASE": url}, both, pg)
			if len(notes) != 0 {
				t.Errorf("notes %q: Apply cannot see database.yml", notes)
			}
			status, stdout, stderr := migrate(t, app, env)
			if status != 0 {
				t.Fatalf("rails exited %d:\n%s%s", status, stdout, stderr)
			}
			assertValues(t, sessionValues(stdout), tt.want, stdout, stderr)
		})
	}
}
