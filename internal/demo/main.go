// Command demo runs migrun once with no database server (a sqlite3 file
// lock in a temp dir) and a sample migration, and shows what a run leaves
// behind: migrun's own output, the Kubernetes termination log, and the
// Slack message as it would be posted (caught by a local stand-in). It
// leaves nothing behind: `make demo`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
)

const migration = `echo "== 20240101000000 CreateUsers: migrating ======================================"
echo "-- create_table(:users)"
echo "   -> 0.0045s"
echo "== 20240101000000 CreateUsers: migrated (0.0046s) ============================="`

func main() {
	migrun := flag.String("migrun", "bin/migrun", "the migrun binary to run")
	flag.Parse()
	if err := demo(*migrun, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func demo(migrun string, out io.Writer) error {
	dir, err := os.MkdirTemp("", "migrun-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var posted bytes.Buffer
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(&posted, r.Body)
	}))
	defer slack.Close()

	term := filepath.Join(dir, "termination-log")
	cmd := exec.Command(migrun, "run", "--", "sh", "-c", migration)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=sqlite3:" + filepath.Join(dir, "demo.sqlite3"),
		"MIGRUN_TERMINATION_LOG=" + term,
		"MIGRUN_ENVIRONMENT=demo",
		"MIGRUN_APP=rails-app",
		"MIGRUN_REVISION=1.2.3",
		"POD_NAME=rails-db-migrate-x7k2p",
		"SLACK_WEBHOOK_URL=" + slack.URL + "/services/T000/B000/demo",
	}
	fmt.Fprintln(out, "=== migrun run (its own log lines are on stderr, the command's output on stdout)")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("migrun: %w", err)
	}
	summary, err := os.ReadFile(term)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n=== the termination log (kubectl describe pod shows it)\n%s", summary)
	var msg struct {
		Text        string `json:"text"`
		Attachments []struct {
			Color  string `json:"color"`
			Fields []struct{ Title, Value string }
		} `json:"attachments"`
	}
	if err := json.Unmarshal(posted.Bytes(), &msg); err != nil {
		return fmt.Errorf("the Slack stand-in got no message: %w", err)
	}
	fmt.Fprintf(out, "\n=== the Slack message, as posted\n%s\n", msg.Text)
	for _, a := range msg.Attachments {
		fmt.Fprintf(out, "[%s]", a.Color)
		for _, f := range a.Fields {
			fmt.Fprintf(out, " %s: %s;", f.Title, f.Value)
		}
		fmt.Fprintln(out)
	}
	return nil
}
