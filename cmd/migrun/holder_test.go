package main

import (
	"io"
	"strings"
	"testing"

	"github.com/migrun/migrun/report"
)

// TestCommandIdentity: the name a waiter looks for is the name the
// holder's command gets, also when a long Pod name cuts both to 63 bytes.
func TestCommandIdentity(t *testing.T) {
	for _, host := range []string{"web-1", strings.Repeat("very-long-pod-name-", 4)} {
		env := map[string]string{"DATABASE_URL": pgURL, "POD_NAME": host}
		c, err := parseRun(nil, env, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r := &run{cfg: c, environ: env, res: &report.Result{Host: host}}
		command := r.commandEnv()
		lockName := truncateName(r.identity()) // as dbconn.PostgresIdentity keeps it
		if got := c.lockOptions(r.identity(), nil).CommandIdentity(lockName); got != command["PGAPPNAME"] {
			t.Errorf("host %q: the waiter looks for %q, the command is named %q", host, got, command["PGAPPNAME"])
		}
	}
	if got := commandIdentity("rails-app"); got != "" {
		t.Errorf("commandIdentity(not migrun's) = %q", got)
	}
}
