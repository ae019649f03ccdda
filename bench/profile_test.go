package main

// Go benchmarks of migrun's hot paths, in-process, for profiling where a
// target of the suite is missed:
//
//	go test ./bench -run '^$' -bench PassThrough -cpuprofile /tmp/cpu.prof
//	go tool pprof -top /tmp/cpu.prof
//
// They report throughput and time per operation and assert nothing; go
// test without -bench runs none of them.

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/migrun/migrun/dburl"
	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/lock"
	"github.com/migrun/migrun/runner"
)

// benchHelper builds the helper command into the benchmark's temp dir.
func benchHelper(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "helper")
	if out, err := exec.Command("go", "build", "-o", path, "github.com/migrun/migrun/bench/helper").CombinedOutput(); err != nil {
		b.Fatalf("build the helper: %v\n%s", err, out)
	}
	return path
}

// BenchmarkPassThrough runs the helper's generator under runner.Start, as
// `migrun run` does, with the live output drained from a pipe.
func BenchmarkPassThrough(b *testing.B) {
	const size = 256 << 20
	helper := benchHelper(b)
	for _, shape := range []string{"lines", "chunks"} {
		b.Run(shape, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				r, w, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { _, err := drain(r); done <- err }()
				p, err := runner.Start([]string{helper, "gen", shape, strconv.Itoa(size)}, nil, runner.Options{Stdout: w, Stderr: io.Discard})
				if err != nil {
					b.Fatal(err)
				}
				res := p.Wait()
				w.Close()
				if err := <-done; err != nil || res.ExitCode != 0 {
					b.Fatalf("exit %d, drain: %v", res.ExitCode, err)
				}
				r.Close()
			}
		})
	}
}

// BenchmarkLock takes and releases each database lock as `migrun run`
// does: connect, lock, unlock, disconnect.
func BenchmarkLock(b *testing.B) {
	for _, kind := range []string{testdb.KindPostgreSQL, testdb.KindMariaDB} {
		b.Run(kind, func(b *testing.B) {
			var srv *testdb.Server
			if kind == testdb.KindPostgreSQL {
				srv = testdb.NewPostgres(b)
			} else {
				srv = testdb.NewMariaDB(b)
			}
			u, err := dburl.Parse(srv.URL(testdb.AppUser))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				l, err := lock.New(u, lock.Options{Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
