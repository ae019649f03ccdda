package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
)

// slackCollector stands in for Slack, both an incoming webhook and the Web
// API's chat.postMessage, and keeps every payload it receives.
type slackCollector struct {
	url      string
	mu       sync.Mutex
	payloads []string
}

func newSlackCollector(t *testing.T) *slackCollector {
	c := &slackCollector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		payload := string(body)
		if strings.HasSuffix(r.URL.Path, "/chat.postMessage") {
			// The token itself is the credential, sent as a form field to
			// the API it is for; everything else in the form is payload.
			form, err := url.ParseQuery(payload)
			if err != nil {
				t.Errorf("chat.postMessage body is not a form: %v", err)
			}
			form.Del("token")
			payload = form.Encode()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"ok":true,"channel":"C0000","ts":"1.000001"}`))
		} else {
			_, _ = w.Write([]byte("ok"))
		}
		c.mu.Lock()
		c.payloads = append(c.payloads, payload)
		c.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *slackCollector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.payloads...)
}

// secretsScenario is a fault or a bad input, played with env (Slack and log
// format settings) added to every run; it checks its own outcome and
// returns every run it made.
type secretsScenario struct {
	name string
	play func(t *testing.T, env map[string]string) []result
}

// TestNoSecretAnywhere plays the fault and bad-input scenarios with Slack
// notified through a webhook and through a bot token, with logs in text and
// in JSON, and collects everything migrun writes: stdout, stderr, the
// termination log and every Slack payload. Neither a database password nor
// the webhook URL (or its secret path) nor the bot token may appear in any.
func TestNoSecretAnywhere(t *testing.T) {
	pg, my := testdb.Postgres(t), testdb.MariaDB(t)
	const (
		hookSecret = "WebhookPathSecret0123"
		botToken   = "xoxb-BotTokenSecret0123"
		typedPw    = "TypedPwSecret0123" // a password in bad input
	)
	slack := newSlackCollector(t)
	hook := slack.url + "/services/T0000/B0000/" + hookSecret
	secrets := []string{pg.Password(), my.Password(), hook, hookSecret, botToken, typedPw}
	port := closedPort(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Servers this test may stop, one of each kind, used by one scenario at a
	// time and stopped when the test ends.
	stoppables := map[string]*stoppableServer{testdb.KindPostgreSQL: {}, testdb.KindMariaDB: {}}
	t.Cleanup(func() {
		for _, s := range stoppables {
			s.close()
		}
	})
	stoppable := func(t *testing.T, kind string) (*testdb.Server, func()) {
		return stoppables[kind].use(t, kind)
	}

	// simple is a scenario of one run that must exit with status.
	simple := func(name string, status int, env map[string]string, args ...string) secretsScenario {
		return secretsScenario{name, func(t *testing.T, base map[string]string) []result {
			e := with(base, "MIGRUN_CONNECT_TIMEOUT", "1s")
			for k, v := range env {
				e[k] = v
			}
			res := invocation{env: e, args: append([]string{"run"}, args...)}.run(t)
			if res.status != status {
				t.Errorf("exit status %d, want %d:\n%s", res.status, status, res.stderr)
			}
			return []result{res}
		}}
	}
	wrongPw := func(srv *testdb.Server) string {
		return strings.Replace(srv.URL("migrun"), ":"+srv.Password()+"@", ":"+typedPw+"@", 1)
	}
	scenarios := []secretsScenario{
		simple("success postgresql", 0, map[string]string{"DATABASE_URL": pg.URL("migrun")}, "--", "sh", "-c", "echo '== 1 CreateUsers: migrated =='"),
		simple("success mariadb", 0, map[string]string{"DATABASE_URL": my.URL("migrun")}, "--", "true"),
		simple("command fails", 1, map[string]string{"DATABASE_URL": pg.URL("migrun")}, "--", "sh", "-c", "echo 'rails aborted!' >&2; exit 1"),
		simple("wrong password postgresql", 69, map[string]string{"DATABASE_URL": wrongPw(pg)}, "--", "true"),
		simple("wrong password mariadb", 69, map[string]string{"DATABASE_URL": wrongPw(my)}, "--", "true"),
		simple("unknown host", 69, map[string]string{"DATABASE_URL": "postgres://app:" + typedPw + "@no-such-host.invalid/app"}, "--", "true"),
		simple("closed port", 69, map[string]string{"DATABASE_URL": fmt.Sprintf("mysql2://app:%s@127.0.0.1:%d/app", typedPw, port)}, "--", "true"),
		simple("TLS required, not offered", 69, map[string]string{"DATABASE_URL": pg.URL("migrun") + "?sslmode=require"}, "--", "true"),
		simple("malformed URL", 64, map[string]string{"DATABASE_URL": "postgres://app:" + typedPw + "@127.0.0.1:port/app"}, "--", "true"),
		simple("unsupported URL", 64, map[string]string{"DATABASE_URL": "mongodb://app:" + typedPw + "@127.0.0.1/app"}, "--", "true"),
		simple("URL without a database", 64, map[string]string{"DATABASE_URL": "postgres://app:" + typedPw + "@127.0.0.1"}, "--", "true"),
		simple("password in a flag, unknown flag", 64, nil, "--database-url=postgres://app:"+typedPw+"@h/db", "--frobnicate", "--", "true"),
		simple("bad duration", 64, map[string]string{"DATABASE_URL": pg.URL("migrun"), "MIGRUN_LOCK_TIMEOUT": "soon"}, "--", "true"),
		simple("negative timeout", 64, map[string]string{"DATABASE_URL": pg.URL("migrun")}, "--connect-timeout=-1s", "--", "true"),
		simple("unknown lock mode", 64, map[string]string{"DATABASE_URL": pg.URL("migrun"), "MIGRUN_LOCK_MODE": "exclusive"}, "--", "true"),
		simple("unknown notify policy", 64, map[string]string{"DATABASE_URL": pg.URL("migrun"), "MIGRUN_NOTIFY": "sometimes"}, "--", "true"),
		simple("malformed webhook", 64, map[string]string{"DATABASE_URL": pg.URL("migrun"), "SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/" + hookSecret}, "--", "true"),
		simple("empty command", 64, map[string]string{"DATABASE_URL": pg.URL("migrun")}, "--", ""),
		simple("command not found", 127, map[string]string{"DATABASE_URL": pg.URL("migrun")}, "--", "no-such-command-migrun"),
		simple("command not executable", 126, map[string]string{"DATABASE_URL": pg.URL("migrun")}, "--", notExec),
		{"lock timeout", func(t *testing.T, env map[string]string) []result {
			_, url := pg.CreateDatabase(t)
			env = with(env, "DATABASE_URL", url)
			holder, release := holdLock(t, env)
			late := invocation{env: env, args: []string{"run", "--lock-timeout=500ms", "--", "true"}}.run(t)
			if late.status != 75 {
				t.Errorf("late runner exited %d, want 75:\n%s", late.status, late.stderr)
			}
			release()
			return []result{late, holder.waitWithin(t, timeoutLong)}
		}},
		{"SIGTERM mid-migration", func(t *testing.T, env map[string]string) []result {
			_, url := my.CreateDatabase(t)
			r, _ := holdLock(t, with(env, "DATABASE_URL", url))
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			res := r.waitWithin(t, timeoutLong)
			if res.status != 143 {
				t.Errorf("exit status %d, want 143:\n%s", res.status, res.stderr)
			}
			return []result{res}
		}},
		{"lock backend terminated postgresql", func(t *testing.T, env map[string]string) []result {
			return lockBackendKilled(t, pg, env)
		}},
		{"lock backend terminated mariadb", func(t *testing.T, env map[string]string) []result {
			return lockBackendKilled(t, my, env)
		}},
		{"server stopped postgresql", func(t *testing.T, env map[string]string) []result {
			srv, done := stoppable(t, testdb.KindPostgreSQL)
			defer done()
			return serverStoppedWhileWaiting(t, srv, env)
		}},
		{"server stopped mariadb", func(t *testing.T, env map[string]string) []result {
			srv, done := stoppable(t, testdb.KindMariaDB)
			defer done()
			return serverStoppedWhileWaiting(t, srv, env)
		}},
	}

	slackModes := map[string]map[string]string{
		"webhook":   {"SLACK_WEBHOOK_URL": hook},
		"bot token": {"SLACK_BOT_TOKEN": botToken, "SLACK_CHANNEL": "#deploys", "SLACK_API_URL": slack.url + "/api/"},
	}
	var mu sync.Mutex
	var outputs []string // every run's stdout, stderr and termination log
	t.Run("scenarios", func(t *testing.T) {
		for _, format := range []string{"text", "json"} {
			for mode, slackEnv := range slackModes {
				for _, sc := range scenarios {
					t.Run(fmt.Sprintf("%s/%s/%s", format, mode, sc.name), func(t *testing.T) {
						t.Parallel()
						env := with(slackEnv, "MIGRUN_LOG_FORMAT", format, "MIGRUN_NOTIFY_TIMEOUT", "5s")
						results := sc.play(t, env)
						mu.Lock()
						defer mu.Unlock()
						for _, r := range results {
							outputs = append(outputs, r.stdout, r.stderr, r.termination)
						}
					})
				}
			}
		}
	})

	// The servers the stop scenarios used have passwords of their own.
	for _, s := range stoppables {
		if s.srv != nil {
			secrets = append(secrets, s.srv.Password())
		}
	}
	payloads := slack.all()
	// Every scenario but the bad webhook reaches Slack at least once per mode
	// and format; the check below must have something to look at.
	if min := 2 * 2 * (len(scenarios) - 1); len(payloads) < min {
		t.Errorf("Slack received %d payloads, want at least %d", len(payloads), min)
	}
	sources := map[string][]string{"output or log": outputs, "Slack payload": payloads}
	for what, texts := range sources {
		for _, text := range texts {
			for _, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Errorf("%s holds the secret %q:\n%s", what, secret, text)
				}
			}
		}
	}
	t.Logf("checked %d outputs and %d Slack payloads for %d secrets", len(outputs), len(payloads), len(secrets))
}

// lockBackendKilled ends the lock holder's database session while its
// command runs (pg_terminate_backend, KILL): the keep-alive reports it, and
// the exit status is the command's.
func lockBackendKilled(t *testing.T, srv *testdb.Server, env map[string]string) []result {
	t.Helper()
	db, url := srv.CreateDatabase(t)
	r, release := holdLock(t, with(env, "DATABASE_URL", url, "MIGRUN_KEEPALIVE_INTERVAL", "100ms"))
	if srv.Kind() == testdb.KindPostgreSQL {
		srv.Exec(t, "", fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'migrun%%' AND datname = '%s'", db))
	} else {
		id := srv.QueryInt(t, "", fmt.Sprintf("SELECT id FROM information_schema.processlist WHERE user = '%s' AND db = '%s'", testdb.AppUser, db))
		srv.Exec(t, "", fmt.Sprintf("KILL %d", id))
	}
	waitFor(t, "the keep-alive to report the lost lock", timeoutLong, func() bool {
		return strings.Contains(r.stderr.String(), "lock lost")
	})
	release()
	res := r.waitWithin(t, timeoutLong)
	assertLockLost(t, res, env["MIGRUN_ON_LOCK_LOST"] == "continue")
	return []result{res}
}

// assertLockLost checks how a holder that lost its lock ended: by default
// its command was stopped (exit 75); with MIGRUN_ON_LOCK_LOST=continue the
// command finished and its own status (here 0) stands. Either way the
// termination log says the lock was lost.
func assertLockLost(t *testing.T, res result, continued bool) {
	t.Helper()
	want, says := 75, "command stopped"
	if continued {
		want, says = 0, "lock lost while running"
	}
	if res.status != want || !strings.Contains(res.termination, "lock lost while running") || !strings.Contains(res.termination, says) {
		t.Errorf("holder exited %d, want %d with %q in its termination log:\n%s\n%s", res.status, want, says, res.termination, res.stderr)
	}
}

// stoppableServer is a private server started on first use and lent to one
// user at a time.
type stoppableServer struct {
	mu   sync.Mutex
	once sync.Once
	srv  *testdb.Server
	err  error
}

func (s *stoppableServer) use(t *testing.T, kind string) (*testdb.Server, func()) {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if kind == testdb.KindPostgreSQL {
			s.srv, s.err = testdb.StartPostgres(ctx, testdb.Options{})
		} else {
			s.srv, s.err = testdb.StartMariaDB(ctx, testdb.Options{})
		}
	})
	if s.err != nil {
		t.Fatalf("start a private %s server: %v", kind, s.err)
	}
	s.mu.Lock()
	return s.srv, s.mu.Unlock
}

func (s *stoppableServer) close() {
	if s.srv != nil {
		_ = s.srv.Close()
	}
}
