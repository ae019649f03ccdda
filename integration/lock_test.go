package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestLockExcludes: runners sharing a lock never run their commands at the
// same time, checked with the commands' own timestamps.
func TestLockExcludes(t *testing.T) {
	const runners = 6
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, url := srv.CreateDatabase(t)
			marks := filepath.Join(t.TempDir(), "marks")
			results := runConcurrently(t, copies(invocation{env: map[string]string{"DATABASE_URL": url}, args: markedRun(marks, "0.1")}, runners)...)
			assertSucceeded(t, results)
			assertNoOverlap(t, marks, runners)
			assertNoSecret(t, srv.Password(), results...)
		})
	}
}

// markedRun is the arguments of a migrun run whose command appends
// "start <ns>" and "end <ns>" to marks around sleeping for the given seconds,
// for assertNoOverlap.
func markedRun(marks, seconds string) []string {
	return []string{"run", "--", "sh", "-c",
		fmt.Sprintf(`echo "start $(date +%%s%%N)" >> %[1]s; sleep %[2]s; echo "end $(date +%%s%%N)" >> %[1]s`, marks, seconds)}
}

// assertNoOverlap reads "start N"/"end N" lines and checks that, in time
// order, every start is followed by its end before the next start.
func assertNoOverlap(t *testing.T, path string, want int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type mark struct {
		kind string
		at   int64
	}
	var marks []mark
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		kind, at, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			t.Fatalf("bad mark %q", line)
		}
		marks = append(marks, mark{kind, n})
	}
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].at < marks[j].at })
	if len(marks) != 2*want {
		t.Fatalf("%d marks, want %d:\n%s", len(marks), 2*want, data)
	}
	for i, m := range marks {
		wantKind := "start"
		if i%2 == 1 {
			wantKind = "end"
		}
		if m.kind != wantKind {
			t.Fatalf("critical sections overlap (mark %d is %q, want %q):\n%s", i, m.kind, wantKind, data)
		}
	}
}

// TestLockTimeout: a runner that cannot get the lock in time exits 75 and
// never runs its command.
func TestLockTimeout(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, url := srv.CreateDatabase(t)
			holder, release := holdLock(t, map[string]string{"DATABASE_URL": url})
			ran := filepath.Join(t.TempDir(), "ran")
			late := invocation{env: map[string]string{"DATABASE_URL": url}, args: []string{"run", "--lock-timeout=1s", "--", "touch", ran}}.run(t)
			release()
			if late.status != 75 {
				t.Errorf("late runner exited %d, want 75:\n%s", late.status, late.stderr)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Errorf("the late runner ran its command without the lock")
			}
			if !strings.Contains(late.termination, "lock not acquired in 1s") {
				t.Errorf("termination log:\n%s", late.termination)
			}
			if res := holder.wait(t); res.status != 0 {
				t.Errorf("holder exited %d:\n%s", res.status, res.stderr)
			}
			assertNoSecret(t, srv.Password(), late)
		})
	}
}

// TestUnreachable: nothing listens on the port: exit 69 once the connect
// timeout has passed, with the password nowhere.
func TestUnreachable(t *testing.T) {
	port := closedPort(t)
	for _, scheme := range []string{"postgres", "mysql2"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			url := fmt.Sprintf("%s://app:Sup3rSecretPw@127.0.0.1:%d/app", scheme, port)
			ran := filepath.Join(t.TempDir(), "ran")
			res := invocation{env: map[string]string{"DATABASE_URL": url, "MIGRUN_CONNECT_TIMEOUT": "1s"}, args: []string{"run", "--", "touch", ran}}.run(t)
			if res.status != 69 {
				t.Errorf("exit status %d, want 69:\n%s", res.status, res.stderr)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Errorf("the command ran without the lock")
			}
			assertNoSecret(t, "Sup3rSecretPw", res)
		})
	}
}

// TestWrongPassword: authentication refused is not retried: exit 69.
func TestWrongPassword(t *testing.T) {
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			url := strings.Replace(srv.URL("migrun"), ":"+srv.Password()+"@", ":WrongPassw0rd@", 1)
			res := invocation{env: map[string]string{"DATABASE_URL": url, "MIGRUN_CONNECT_TIMEOUT": "5m"}, args: []string{"run", "--", "true"}}.run(t)
			if res.status != 69 {
				t.Errorf("exit status %d, want 69:\n%s", res.status, res.stderr)
			}
			assertNoSecret(t, "WrongPassw0rd", res)
			assertNoSecret(t, srv.Password(), res)
		})
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
