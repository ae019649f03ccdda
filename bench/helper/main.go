// Command helper is the command the benchmarks have migrun run: it stamps
// when it starts and ends (for the lock hand-off and throughput
// benchmarks) and generates output fast (for the pass-through benchmark).
// It is a small static Go program, so what it costs is known and constant.
//
//	helper stamp FILE [-sleep D] [-wait PATH]
//	    append "start NS PID PPID" to FILE, wait until PATH exists (when
//	    given), sleep D, then append "end NS PID PPID CPU_NS" (CPU_NS: this
//	    process's own CPU time; PPID: the migrun that runs it).
//	helper nop
//	    exit at once: the start-up of a minimal static Go program.
//	helper maxrss FILE -- COMMAND [ARG...]
//	    run COMMAND with our stdio and write its ru_maxrss (KiB) to FILE.
//	    A child's ru_maxrss includes the RSS its parent had when it forked,
//	    so this small launcher, not the benchmark program, must be the parent.
//	helper relay read|splice -- COMMAND [ARG...]
//	    run COMMAND with its stdout on a pipe and pass that to our stdout:
//	    with read(2)/write(2) through a 32 KiB buffer (what any program that
//	    looks at the output must at least do), or with tee(2) into a second
//	    pipe that is read (the copy a capture needs) and splice(2) to stdout,
//	    which moves the pages without copying them.
//	helper gen lines|chunks BYTES
//	    write BYTES to stdout: 4 KiB newline-terminated lines, one write
//	    each (as a line-buffered program writes), or 64 KiB chunks without
//	    newlines.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: helper stamp FILE [-sleep D] [-wait PATH] | helper gen lines|chunks BYTES | helper relay read|splice -- COMMAND... | helper maxrss FILE -- COMMAND... | helper nop")
	}
	switch os.Args[1] {
	case "stamp":
		stamp(os.Args[2:])
	case "gen":
		gen(os.Args[2:])
	case "relay":
		relay(os.Args[2:])
	case "maxrss":
		maxrss(os.Args[2:])
	case "nop":
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func stamp(args []string) {
	// The first thing the command does: read the clock.
	start := time.Now().UnixNano()
	if len(args) < 1 {
		fail("stamp: no file")
	}
	file := args[0]
	var sleep time.Duration
	var wait string
	for i := 1; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-sleep":
			d, err := time.ParseDuration(args[i+1])
			if err != nil {
				fail(err.Error())
			}
			sleep = d
		case "-wait":
			wait = args[i+1]
		default:
			fail("stamp: unknown flag " + args[i])
		}
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fail(err.Error())
	}
	// One write per line: O_APPEND writes of a line are atomic between the
	// runners sharing the file.
	if _, err := fmt.Fprintf(f, "start %d %d %d\n", start, os.Getpid(), os.Getppid()); err != nil {
		fail(err.Error())
	}
	if wait != "" {
		for {
			if _, err := os.Stat(wait); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if sleep > 0 {
		time.Sleep(sleep)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// The last thing it does before exiting: read the clock.
	end := time.Now().UnixNano()
	if _, err := fmt.Fprintf(f, "end %d %d %d %d\n", end, os.Getpid(), os.Getppid(), cpu.Nanoseconds()); err != nil {
		fail(err.Error())
	}
}

func gen(args []string) {
	if len(args) != 2 {
		fail("gen: want lines|chunks BYTES")
	}
	total, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		fail(err.Error())
	}
	var block []byte
	switch args[0] {
	case "lines":
		block = make([]byte, 4<<10)
		for i := range block {
			block[i] = 'a' + byte(i%26)
		}
		block[len(block)-1] = '\n'
	case "chunks":
		block = make([]byte, 64<<10)
		for i := range block {
			block[i] = 'a' + byte(i%26)
		}
	default:
		fail("gen: unknown shape " + args[0])
	}
	// Straight write(2)s on fd 1: no buffering layer of our own.
	for written := int64(0); written < total; {
		b := block
		if rest := total - written; rest < int64(len(b)) {
			b = b[:rest]
		}
		n, err := syscall.Write(1, b)
		if err != nil {
			if err == syscall.EINTR || err == syscall.EAGAIN {
				continue
			}
			fail(err.Error())
		}
		written += int64(n)
	}
}

func relay(args []string) {
	if len(args) < 3 || args[1] != "--" {
		fail("relay: want read|splice -- COMMAND [ARG...]")
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		fail(err.Error())
	}
	cmd := exec.Command(args[2], args[3:]...)
	cmd.Stdout = os.NewFile(uintptr(p[1]), "pipe")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	syscall.Close(p[1])
	in := p[0]
	buf := make([]byte, 32<<10)
	switch args[0] {
	case "read":
		for {
			n, err := syscall.Read(in, buf)
			if err == syscall.EINTR {
				continue
			}
			if n <= 0 {
				break
			}
			writeAll(buf[:n])
		}
	case "splice":
		var c [2]int
		if err := syscall.Pipe2(c[:], syscall.O_CLOEXEC); err != nil {
			fail(err.Error())
		}
		for {
			n, err := syscall.Tee(in, c[1], 1<<20, 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				fail("tee: " + err.Error())
			}
			if n == 0 {
				break
			}
			for left := n; left > 0; {
				m, err := syscall.Splice(in, nil, 1, nil, int(left), 0)
				if err == syscall.EINTR {
					continue
				}
				if err != nil {
					fail("splice: " + err.Error())
				}
				left -= m
			}
			for left := n; left > 0; {
				m, err := syscall.Read(c[0], buf[:min(int(left), len(buf))])
				if err == syscall.EINTR {
					continue
				}
				if err != nil || m <= 0 {
					fail("read capture copy")
				}
				left -= int64(m)
			}
		}
	default:
		fail("relay: unknown mode " + args[0])
	}
	if err := cmd.Wait(); err != nil {
		fail(err.Error())
	}
}

func maxrss(args []string) {
	if len(args) < 3 || args[1] != "--" {
		fail("maxrss: want FILE -- COMMAND [ARG...]")
	}
	cmd := exec.Command(args[2], args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fail(err.Error())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if err := os.WriteFile(args[0], []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644); err != nil {
		fail(err.Error())
	}
	os.Exit(cmd.ProcessState.ExitCode())
}

func writeAll(b []byte) {
	for len(b) > 0 {
		n, err := syscall.Write(1, b)
		if err == syscall.EINTR || err == syscall.EAGAIN {
			continue
		}
		if err != nil {
			fail(err.Error())
		}
		b = b[n:]
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "helper:", msg)
	os.Exit(2)
}
