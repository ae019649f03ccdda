// Command migrun makes a database migration a safe, ordered step of a
// deploy: it takes an advisory lock, runs the migration command, reports the
// result and exits with a status the orchestrator can act on.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/migrun/migrun/report"
	"golang.org/x/sys/unix"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	exitsAfterMain = true
	os.Exit(Main(context.Background(), os.Args[1:], environMap(os.Environ()), ownCopy(os.Stdout), ownCopy(os.Stderr)))
}

// ownCopy is f on a descriptor of migrun's own (close-on-exec), for its
// writes to stdout and stderr: the Go runtime ends a program with SIGPIPE
// when a write to descriptor 1 or 2 finds the pipe closed (a log
// collector gone), unless SIGPIPE is caught, which is a round trip to the
// runtime's signal thread on the way to the command's start; on any other
// descriptor the write fails with EPIPE, which migrun's writers ignore.
// Without a copy (f is closed, or no descriptor is left) it is f. (Not
// f.Fd(), which would make the file, shared with whoever started migrun,
// blocking.)
func ownCopy(f *os.File) *os.File {
	sc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	fd := -1
	if cerr := sc.Control(func(orig uintptr) { fd, err = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 3) }); cerr != nil || err != nil {
		return f
	}
	return os.NewFile(uintptr(fd), f.Name())
}

// Main runs migrun with args (without the program name) and returns the
// exit status. It is main without the process globals, for tests.
func Main(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		// Typed alone, to see what it is: never take a lock and migrate.
		printHelp(stderr, "")
		return report.ExitUsage
	}
	switch args[0] {
	case "run":
		return runMain(ctx, args[1:], environ, stdout, stderr)
	case "wait":
		return waitMain(ctx, args[1:], environ, stdout, stderr)
	case "manifest":
		return manifestMain(ctx, args[1:], environ, stdout, stderr)
	case "status":
		return statusMain(ctx, args[1:], environ, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "migrun", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		return helpMain(args[1:], stdout, stderr)
	}
	if strings.HasPrefix(args[0], "-") {
		// `migrun [flags] -- COMMAND` is `migrun run [flags] -- COMMAND`.
		return runMain(ctx, args, environ, stdout, stderr)
	}
	fmt.Fprintf(stderr, "migrun: unknown command %q (want run, wait, manifest, status, help or version)\n", args[0])
	return report.ExitUsage
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

func environMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
