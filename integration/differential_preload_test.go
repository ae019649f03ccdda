package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// railsPreloader runs Rails commands in children forked from one Ruby that
// has loaded the bundle, Rails and Active Record (testdata/differential/
// preload.rb): half the CPU of a fresh bin/rails, most of which is loading
// those gems. Only apps that bundle exactly the template's gems use it; the
// verdicts it gives are checked against every layout's expected one, which
// were taken from fresh processes. MIGRUN_DIFFTEST_FRESH_RUBY=1 turns it off.
type railsPreloader struct {
	template string // the bundled app template whose gems are loaded
	cmd      *exec.Cmd
	stdin    io.WriteCloser

	mu      sync.Mutex // guards the fields below and writes to stdin
	nextID  int
	waiting map[int]chan preloadReply
	err     error // the preloader is gone
}

type preloadRequest struct {
	ID     int               `json:"id"`
	Dir    string            `json:"dir"`
	Env    map[string]string `json:"env"`
	Argv   []string          `json:"argv"`
	Stdout string            `json:"stdout"`
	Stderr string            `json:"stderr"`
}

type preloadReply struct {
	Ready  bool    `json:"ready"`
	ID     int     `json:"id"`
	PID    int     `json:"pid"`
	Status *int    `json:"status"`
	CPU    float64 `json:"cpu"`
}

// startRailsPreloader starts the preloader on the bundled template, or
// returns nil (fresh processes) when told to or when it cannot start.
func startRailsPreloader(t *testing.T, template string) *railsPreloader {
	t.Helper()
	if os.Getenv("MIGRUN_DIFFTEST_FRESH_RUBY") != "" {
		return nil
	}
	script, err := filepath.Abs(filepath.Join("testdata", "differential", "preload.rb"))
	if err != nil {
		t.Fatal(err)
	}
	p := &railsPreloader{template: template, waiting: map[int]chan preloadReply{}}
	p.cmd = exec.Command("ruby", script)
	p.cmd.Dir = template
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8",
		"BUNDLE_GEMFILE=" + filepath.Join(template, "Gemfile")}
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stdin.Close() // the preloader ends at the end of its input
		if err := p.cmd.Wait(); err != nil {
			t.Logf("rails preloader: %v\n%s", err, stderr.String())
		}
	})
	lines := bufio.NewScanner(stdout)
	var first preloadReply
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &first) != nil || !first.Ready {
		t.Logf("rails preloader did not start; fresh processes instead:\n%s", stderr.String())
		return nil
	}
	go p.read(lines)
	return p
}

// read hands each reply to the run waiting for it.
func (p *railsPreloader) read(lines *bufio.Scanner) {
	for lines.Scan() {
		var r preloadReply
		if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
			continue
		}
		p.mu.Lock()
		ch := p.waiting[r.ID]
		p.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = fmt.Errorf("rails preloader ended: %v", lines.Err())
	for _, ch := range p.waiting {
		close(ch)
	}
	p.waiting = nil
}

// serves reports whether app bundles exactly the preloaded gems.
func (p *railsPreloader) serves(app string) bool {
	for _, f := range []string{"Gemfile", "Gemfile.lock"} {
		mine, err1 := os.ReadFile(filepath.Join(p.template, f))
		theirs, err2 := os.ReadFile(filepath.Join(app, f))
		if err1 != nil || err2 != nil || !bytes.Equal(mine, theirs) {
			return false
		}
	}
	return true
}

// run runs argv (a program of the app, e.g. bin/rails) in a forked child,
// like diffRow.command; scratch holds its output files.
func (p *railsPreloader) run(t *testing.T, scratch, dir string, env map[string]string, argv []string) (status int, stdout, stderr string, cpu time.Duration) {
	t.Helper()
	replies := make(chan preloadReply, 2)
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		t.Fatal(p.err)
	}
	p.nextID++
	id := p.nextID
	p.waiting[id] = replies
	req := preloadRequest{ID: id, Dir: dir, Env: env, Argv: argv,
		Stdout: filepath.Join(scratch, fmt.Sprintf("preload-%d.out", id)),
		Stderr: filepath.Join(scratch, fmt.Sprintf("preload-%d.err", id))}
	line, err := json.Marshal(req)
	if err == nil {
		_, err = p.stdin.Write(append(line, '\n'))
	}
	p.mu.Unlock()
	if err != nil {
		t.Fatalf("rails preloader: %v", err)
	}
	defer func() {
		p.mu.Lock()
		delete(p.waiting, id)
		p.mu.Unlock()
	}()

	timeout := time.NewTimer(diffProcessTimeout)
	defer timeout.Stop()
	pid := 0
	for {
		select {
		case r, ok := <-replies:
			if !ok {
				t.Fatalf("rails preloader ended while running %v", argv)
			}
			if r.Status == nil {
				pid = r.PID
				continue
			}
			out, _ := os.ReadFile(req.Stdout)
			errOut, _ := os.ReadFile(req.Stderr)
			return *r.Status, string(out), string(errOut), time.Duration(r.CPU * float64(time.Second))
		case <-timeout.C:
			if pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			errOut, _ := os.ReadFile(req.Stderr)
			t.Fatalf("%v still running after %s, killed:\n%s", argv, diffProcessTimeout, errOut)
		}
	}
}
