// Command limit is the benchmarks' lower bound for a lock-run-release
// cycle: only the work no wrapper can avoid, with the libraries and
// connection settings migrun uses, and nothing else (no configuration,
// logging, session settings, keep-alive, supervision or report).
//
// It links the same fixed libraries as migrun: pgx/v5 and
// go-sql-driver/mysql for the locks, and slack-go/slack and
// caarlos0/env/v11, which migrun's design fixes too (its Slack
// notifications, its configuration from the environment). Linking a
// library runs its package initialisation in every process that links it,
// before main: given the fixed dependencies that cost is irreducible, so
// the limit pays it as well (the notify mode below uses the last two as
// migrun does, so the linker keeps of them what migrun keeps).
//
//	limit start
//	    exit at once: Go's start-up and the initialisation of the
//	    packages linked, the start-up of any program built on these
//	    libraries.
//	limit exec -- COMMAND [ARG...]
//	    run COMMAND and wait for it.
//	limit postgresql URL -- COMMAND [ARG...]
//	    connect as migrun does (pgx, dbconn.PostgresConfig: same sslmode),
//	    pg_try_advisory_lock, run COMMAND, wait, pg_advisory_unlock, close.
//	limit mariadb URL -- COMMAND [ARG...]
//	    the same with go-sql-driver/mysql, GET_LOCK and RELEASE_LOCK.
//
//	limit notify
//	    read SLACK_BOT_TOKEN, SLACK_CHANNEL and SLACK_WEBHOOK_URL from the
//	    environment with caarlos0/env and post one message with slack-go
//	    (chat.postMessage, or the webhook). The benchmarks do not run it.
//
// It exits with the command's status; 100 when the lock is held, 101 on
// any other failure.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"

	"github.com/caarlos0/env/v11"
	"github.com/go-sql-driver/mysql"
	"github.com/slack-go/slack"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/dbconn"
)

// The lock's keys: not migrun's, so a stray runner never meets this one.
const (
	pgKey1, pgKey2 = 7001, 7002
	myName         = "migrun-bench-limit"
)

func main() {
	if len(os.Args) == 2 {
		switch os.Args[1] {
		case "start":
			os.Exit(0)
		case "notify":
			// The error is not printed: slack-go's can carry the webhook URL.
			if notify(context.Background()) != nil {
				fail("limit notify: the message was not delivered")
			}
			os.Exit(0)
		}
	}
	if len(os.Args) < 3 {
		fail("usage: limit start | limit notify | limit exec|postgresql URL|mariadb URL -- COMMAND [ARG...]")
	}
	mode, args := os.Args[1], os.Args[2:]
	var url string
	if mode != "exec" {
		url, args = args[0], args[1:]
	}
	if len(args) < 2 || args[0] != "--" {
		fail("limit: want -- COMMAND")
	}
	command := args[1:]
	ctx := context.Background()
	switch mode {
	case "exec":
		os.Exit(run(command))
	case "postgresql":
		os.Exit(withPostgres(ctx, parse(url), command))
	case "mariadb":
		os.Exit(withMariaDB(ctx, parse(url), command))
	}
	fail("limit: unknown mode " + mode)
}

// run runs the command with our stdio and returns its exit status.
func run(command []string) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState == nil {
			fail(err.Error())
		}
	}
	return cmd.ProcessState.ExitCode()
}

func withPostgres(ctx context.Context, u *dburl.URL, command []string) int {
	cfg, err := dbconn.PostgresConfig(u)
	check(err)
	conn, err := dbconn.ConnectPostgres(ctx, cfg)
	check(err)
	defer conn.Close(ctx)
	var got bool
	check(conn.QueryRow(ctx, fmt.Sprintf("SELECT pg_try_advisory_lock(%d, %d)", pgKey1, pgKey2)).Scan(&got))
	if !got {
		os.Exit(100)
	}
	status := run(command)
	_, err = conn.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d, %d)", pgKey1, pgKey2))
	check(err)
	return status
}

func withMariaDB(ctx context.Context, u *dburl.URL, command []string) int {
	cfg, err := dbconn.MySQLConfig(u)
	check(err)
	connector, err := mysql.NewConnector(cfg)
	check(err)
	db := sql.OpenDB(connector)
	defer db.Close()
	// The lock belongs to the connection: one *sql.Conn throughout.
	conn, err := db.Conn(ctx)
	check(err)
	defer conn.Close()
	var got sql.NullInt64
	check(conn.QueryRowContext(ctx, "SELECT GET_LOCK('"+myName+"', 0)").Scan(&got))
	if got.Int64 != 1 {
		os.Exit(100)
	}
	status := run(command)
	_, err = conn.ExecContext(ctx, "DO RELEASE_LOCK('"+myName+"')")
	check(err)
	return status
}

// notify posts one message to Slack, with the settings read from the
// environment: the two libraries' ordinary use, as migrun makes it.
func notify(ctx context.Context) error {
	var cfg struct {
		Token   string `env:"SLACK_BOT_TOKEN"`
		Channel string `env:"SLACK_CHANNEL"`
		Webhook string `env:"SLACK_WEBHOOK_URL"`
	}
	if err := env.Parse(&cfg); err != nil {
		return err
	}
	text := "limit: done"
	if cfg.Webhook != "" {
		return slack.PostWebhookContext(ctx, cfg.Webhook, &slack.WebhookMessage{Text: text})
	}
	_, _, err := slack.New(cfg.Token).PostMessageContext(ctx, cfg.Channel, slack.MsgOptionText(text, false))
	return err
}

func parse(raw string) *dburl.URL {
	u, err := dburl.Parse(raw)
	check(err)
	return u
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(101)
}
