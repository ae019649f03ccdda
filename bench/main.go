// Command bench is migrun's benchmark suite (`make bench`): it measures
// what migrun costs against the alternatives and baselines, on throwaway
// PostgreSQL and MariaDB servers (internal/testdb) and a real Rails app,
// prints the results and writes them to BENCHMARKS.md.
//
// The numbers are medians and percentiles over repeated, interleaved runs,
// each quoted beside a baseline measured in the same run: absolute times on
// a shared machine drift. Nothing here is a test; nothing asserts a time.
//
//	go run ./bench [-migrun bin/migrun] [-out BENCHMARKS.md] [-only overhead,handoff,...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// benchmarks in the order of the issue; -only picks by name.
var benchmarks = []string{"overhead", "handoff", "throughput", "passthrough", "pending", "footprint", "podstart"}

type options struct {
	migrun      string
	out         string
	only        []string
	rounds      int   // overhead, footprint start-up
	handoffs    int   // hand-off rounds of 10 waiters
	throughputs int   // throughput rounds
	passes      int   // pass-through repetitions
	passBytes   int64 // pass-through output size
	rails       int   // Rails runs per variant
	migrations  int   // migration files in the Rails app
	podStarts   int   // Pod-start rounds per N and database
}

func main() {
	var opts options
	var only string
	flag.StringVar(&opts.migrun, "migrun", "", "the migrun binary to measure (default: built here as `make build` builds it)")
	flag.StringVar(&opts.out, "out", "", "write the results to this markdown file (e.g. BENCHMARKS.md)")
	flag.StringVar(&only, "only", "", "comma-separated benchmarks to run: "+strings.Join(benchmarks, ","))
	flag.IntVar(&opts.rounds, "rounds", 150, "overhead: runs of each variant (start-up: five times as many)")
	flag.IntVar(&opts.handoffs, "handoffs", 10, "hand-off: rounds of one holder and 10 waiters, per database")
	flag.IntVar(&opts.throughputs, "throughput-rounds", 3, "throughput: rounds of 20 runners, per lock")
	flag.IntVar(&opts.passes, "passes", 5, "pass-through: runs of each variant")
	flag.Int64Var(&opts.passBytes, "pass-bytes", 1<<30, "pass-through: bytes the command prints")
	flag.IntVar(&opts.rails, "rails-runs", 5, "pending check: runs of each Rails variant")
	flag.IntVar(&opts.migrations, "migrations", 500, "pending check: migration files in the Rails app")
	flag.IntVar(&opts.podStarts, "pod-start-rounds", 5, "Pod start: rounds per N and database")
	flag.Parse()
	if only != "" {
		for _, name := range strings.Split(only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(benchmarks, name) {
				log.Fatalf("unknown benchmark %q (want %s)", name, strings.Join(benchmarks, ", "))
			}
			opts.only = append(opts.only, name)
		}
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	if err := run(opts); err != nil {
		log.Fatal(err)
	}
}

func (o options) wants(name string) bool { return len(o.only) == 0 || slices.Contains(o.only, name) }

func run(opts options) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()

	tmp, err := os.MkdirTemp("", "migrun-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// The servers and the Rails app run as other users when we are root.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	t, err := buildTools(ctx, tmp, opts.migrun)
	if err != nil {
		return err
	}

	log.Print("starting PostgreSQL and MariaDB")
	srv, err := startServers(ctx)
	if err != nil {
		return err
	}
	defer srv.close()
	// A failure deep inside a benchmark (testdb reports through a
	// testing.TB) panics with benchFailure; stop the servers before exiting.
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(benchFailure)
			if !ok {
				panic(r)
			}
			err = errors.New(string(f))
		}
	}()

	m := describeMachine(ctx, srv)
	if err := srv.settle(ctx); err != nil {
		return err
	}
	var sections []*section
	add := func(name string, f func() *section) {
		if !opts.wants(name) || ctx.Err() != nil {
			return
		}
		log.Printf("running %s", name)
		start := time.Now()
		s := f()
		if s.err != nil {
			log.Printf("%s: %v", name, s.err)
		}
		log.Printf("%s done in %s", name, time.Since(start).Round(time.Second))
		sections = append(sections, s)
		fmt.Println(sectionText(s))
	}
	add("overhead", func() *section { return benchOverhead(ctx, t, srv, opts.rounds) })
	add("handoff", func() *section { return benchHandoff(ctx, t, srv, opts.handoffs) })
	add("throughput", func() *section { return benchThroughput(ctx, t, srv, opts.throughputs) })
	add("passthrough", func() *section { return benchPassthrough(ctx, t, opts.passes, opts.passBytes) })
	add("pending", func() *section { return benchPending(ctx, t, srv, opts.rails, opts.migrations) })
	// Start-up runs take milliseconds, and the difference it judges is a
	// fraction of one: five times the rounds, to resolve it.
	add("footprint", func() *section { return benchFootprint(ctx, t, srv, 5*opts.rounds) })
	add("podstart", func() *section { return benchPodStart(ctx, t, srv, opts.podStarts) })
	if err := ctx.Err(); err != nil {
		return err
	}

	doc := document(m, opts, sections, time.Since(began))
	fmt.Println(summary(sections))
	if opts.out != "" {
		if err := os.WriteFile(opts.out, []byte(doc), 0o644); err != nil {
			return err
		}
		log.Printf("wrote %s", opts.out)
	}
	return nil
}

// benchFailure is what fatalTB panics with.
type benchFailure string

// buildTools builds the helper command, the limit program, and migrun
// unless one is given, with the Makefile's flags (static, stripped).
func buildTools(ctx context.Context, tmp, migrun string) (*tools, error) {
	t := &tools{tmp: tmp, helper: filepath.Join(tmp, "helper"), limit: filepath.Join(tmp, "limit")}
	build := func(out, pkg string, ldflags string) error {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
		return nil
	}
	if err := build(t.helper, "github.com/migrun/migrun/bench/helper", "-s -w"); err != nil {
		return nil, err
	}
	if err := build(t.limit, "github.com/migrun/migrun/bench/limit", "-s -w"); err != nil {
		return nil, err
	}
	if migrun == "" {
		t.migrun = filepath.Join(tmp, "migrun")
		log.Print("building migrun as make build does")
		if err := build(t.migrun, "github.com/migrun/migrun/cmd/migrun", "-s -w -X main.version=bench"); err != nil {
			return nil, err
		}
	} else {
		abs, err := filepath.Abs(migrun)
		if err != nil {
			return nil, err
		}
		t.migrun = abs
	}
	if _, err := os.Stat(t.migrun); err != nil {
		return nil, err
	}
	if err := t.recache(0); err != nil {
		return nil, err
	}
	log.Printf("migrun: %s (%s, GOMAXPROCS %d)", t.migrun, runtime.Version(), runtime.GOMAXPROCS(0))
	return t, nil
}

// recacheEvery is how many rounds of the overhead and start-up runs use
// one reading of the binaries into the page cache.
const recacheEvery = 10

// recache reads the compared binaries back into the page cache
// (cacheAsRead) at the start of every recacheEvery-th round (round 0
// included; the warm-up round, -1, not). Each reading caches a file's
// pages its own way, and with it the page faults of every start of that
// binary (±25 faults, ±0.5 ms, on a small VM): read once, a whole run
// carries one draw, and a start-up comparison moved by 2 ms between runs.
func (t *tools) recache(round int) error {
	if round < 0 || round%recacheEvery != 0 {
		return nil
	}
	for _, bin := range []string{t.helper, t.limit, t.migrun} {
		if err := cacheAsRead(bin); err != nil {
			return err
		}
	}
	return nil
}

// cacheAsRead puts a binary just built in the page cache as a container
// image's binary is: read from disk, not left from the linker's writes.
// How a file came into the page cache changes how many page faults
// executing it takes (what the kernel reads ahead it may cache in large
// folios, and map more of at one fault): on a VM where a fault costs tens
// of microseconds, `migrun version` took 16 faults and up to 1.5 ms less
// once its file was dropped from the cache and read back, and the limit
// program 9 faults less. Every program compared is read back the same way.
func cacheAsRead(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil { // written back: only clean pages are dropped
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("%s: drop from the page cache: %w", path, err)
	}
	if _, err := io.Copy(io.Discard, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
