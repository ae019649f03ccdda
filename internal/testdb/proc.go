package testdb

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A server's directory is named dirPrefix, its owner's pid, "-" and a
// random suffix, and holds markerFile: together they let a later process
// recognise the directory of a server whose owner died.
const (
	dirPrefix  = "migrun-testdb-"
	markerFile = "testdb-owner"
	markerText = "a throwaway database server of migrun's internal/testdb; removed when its owner process is gone\n"
)

var reaped sync.Map // parent dirs already searched by this process

func reapOrphansOnce(ctx context.Context, parent string) {
	if _, done := reaped.LoadOrStore(parent, true); !done {
		reapOrphans(ctx, parent)
	}
}

// reapOrphans stops and removes the servers in parent whose owner process
// is gone. go test's -timeout panic and a SIGKILL skip every Cleanup and
// Main's shutdown; without this, every such run would leave its servers
// running for good.
func reapOrphans(ctx context.Context, parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	for _, dir := range dirs {
		owner, ok := ownerOf(dir)
		if !ok || running(owner) {
			continue
		}
		if err := reap(ctx, dir); err != nil {
			slog.Warn("testdb: remove a server left by a dead process", "dir", dir, "err", err)
			continue
		}
		slog.Info("testdb: removed a server left by a dead process", "dir", dir, "owner", owner)
	}
}

// ownerOf is the pid in a server directory's name, if it is one.
func ownerOf(dir string) (int, bool) {
	digits, _, found := strings.Cut(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")
	pid, err := strconv.Atoi(digits)
	if !found || err != nil || pid <= 0 {
		return 0, false
	}
	marker, err := os.ReadFile(filepath.Join(dir, markerFile))
	return pid, err == nil && string(marker) == markerText
}

// reap stops the server in dir, if one runs, and removes dir.
func reap(ctx context.Context, dir string) error {
	for _, p := range []struct {
		pidFile string
		sig     syscall.Signal
	}{
		// PostgreSQL's immediate shutdown: the postmaster stops its children too.
		{filepath.Join(dir, "data", "postmaster.pid"), syscall.SIGQUIT},
		// Nobody will read this data again.
		{filepath.Join(dir, "my.pid"), syscall.SIGKILL},
		// PgBouncer's immediate shutdown.
		{filepath.Join(dir, "pgbouncer.pid"), syscall.SIGTERM},
	} {
		pid, ok := serverPid(p.pidFile, dir)
		if !ok {
			continue
		}
		if err := syscall.Kill(pid, p.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal server %d: %w", pid, err)
		}
		if err := waitGone(ctx, pid); err != nil {
			return fmt.Errorf("server %d: %w", pid, err)
		}
	}
	return os.RemoveAll(dir)
}

// serverPid is the pid in pidFile if that process is a server using dir:
// a pid file outlives its process, whose pid may since have been reused.
func serverPid(pidFile, dir string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(dir+string(filepath.Separator))) {
		return 0, false
	}
	return pid, running(pid)
}

// running says whether process pid exists and has not exited. A zombie has
// exited: the dead owner of an orphan may be one, not yet reaped by its parent.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if _, procErr := os.Stat("/proc/self/stat"); procErr != nil || !errors.Is(err, fs.ErrNotExist) {
			// No /proc to read: ask the kernel whether the pid exists.
			return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		}
		return false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// waitGone waits for a process that is not our child to exit.
func waitGone(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for running(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("still running: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// startDaemon starts a server process that runs until stopped and waits,
// up to startTimeout, for ready to hold. If it exits or never gets ready,
// the error carries the end of its log file. exited receives its exit.
func startDaemon(ctx context.Context, cmd *exec.Cmd, logFile string, ready func() bool) (exited chan error, err error) {
	name := filepath.Base(cmd.Path)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("%s exited: %v\n%s:\n%s", name, err, filepath.Base(logFile), tail(string(log), 2000))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			log, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("%s did not get ready: %w\n%s:\n%s", name, ctx.Err(), filepath.Base(logFile), tail(string(log), 2000))
		case <-tick.C:
		}
	}
	return exited, nil
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portTaken says whether something else listens on the loopback port.
func portTaken(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	l.Close()
	return false
}

// Passwords are letters and digits only, so they need no quoting in SQL or
// escaping in URLs.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func randomPassword() string { return "pw" + randomString(20) }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return alphabet(b)
}

func alphabet(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = passwordAlphabet[int(c)%len(passwordAlphabet)]
	}
	return string(out)
}
