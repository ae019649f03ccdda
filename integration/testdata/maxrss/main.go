// Command maxrss runs a program and writes its peak RSS in KiB to the file
// named by $MAXRSS_OUT.
//
// The kernel's peak RSS of a process starts at that of the memory it was
// exec'd from: a program started by os/exec from a large process (a test
// binary) reports at least that process's size. Started from this small
// one, the figure is the program's own.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 2 || os.Getenv("MAXRSS_OUT") == "" {
		fmt.Fprintln(os.Stderr, "usage: MAXRSS_OUT=file maxrss program [args...]")
		os.Exit(2)
	}
	out := os.Getenv("MAXRSS_OUT")
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Env = os.Environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		os.Exit(2)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	if err := os.WriteFile(out, fmt.Appendf(nil, "%d\n", rss), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		os.Exit(2)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
