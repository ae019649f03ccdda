package main

import (
	"context"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/lock"
)

// servers are the throwaway database servers of one benchmark run, started
// by the integration tests' harness (internal/testdb).
type servers struct {
	pg, my  *testdb.Server
	started time.Time // when both were up
}

// startServers starts a PostgreSQL and a MariaDB server in parallel.
func startServers(ctx context.Context) (*servers, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	type started struct {
		s   *testdb.Server
		err error
	}
	pgc, myc := make(chan started, 1), make(chan started, 1)
	go func() { s, err := testdb.StartPostgres(ctx, testdb.Options{}); pgc <- started{s, err} }()
	go func() { s, err := testdb.StartMariaDB(ctx, testdb.Options{}); myc <- started{s, err} }()
	pg, my := <-pgc, <-myc
	if pg.err != nil || my.err != nil {
		for _, s := range []*testdb.Server{pg.s, my.s} {
			if s != nil {
				_ = s.Close()
			}
		}
		return nil, fmt.Errorf("start servers: postgresql: %v; mariadb: %v", pg.err, my.err)
	}
	return &servers{pg: pg.s, my: my.s, started: time.Now()}, nil
}

// settle waits until the servers have been up for migrun's takeover guard
// (lock.Timing.TakeoverGuard, with the default dead-holder timeout): a
// runner that takes the lock on a server up for less holds it until then
// before it runs its command (the server may have restarted and lost the
// lock of a holder still running), which the first figures would count.
func (s *servers) settle(ctx context.Context) error {
	timing, err := lock.TimingFor(lock.Options{})
	if err != nil {
		return err
	}
	wait := time.Until(s.started.Add(timing.TakeoverGuard + time.Second))
	if wait <= 0 {
		return nil
	}
	log.Printf("waiting %s for the servers to be up longer than migrun's takeover guard (%s)", wait.Round(time.Second), timing.TakeoverGuard)
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *servers) close() {
	for _, srv := range []*testdb.Server{s.pg, s.my} {
		if err := srv.Close(); err != nil {
			log.Printf("stop %s: %v", srv.Kind(), err)
		}
	}
}

// byKind names the servers as the tables do.
func (s *servers) byKind(kind string) *testdb.Server {
	if kind == "postgresql" {
		return s.pg
	}
	return s.my
}

// database makes a fresh database for one benchmark, so that benchmarks
// never share a lock or a schema_migrations table.
func (s *servers) database(kind string) (name, url string) {
	return s.byKind(kind).CreateDatabase(fatalTB{})
}

// versions asks each server for its version.
func (s *servers) versions(ctx context.Context) (pg, my string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if conn, err := pgConnect(ctx, s.pg.URL(testdb.AppUser)); err == nil {
		_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&pg)
		conn.Close(ctx)
	}
	if db, err := openMySQL(s.my.URL(testdb.AppUser)); err == nil {
		_ = db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&my)
		db.Close()
	}
	return pg, my
}

// fatalTB lets the benchmark program use testdb's helpers, which report
// failures through a testing.TB: here a failure panics with benchFailure,
// which run recovers after stopping the servers.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper()                           {}
func (fatalTB) Cleanup(func())                    {}
func (fatalTB) Logf(format string, args ...any)   { log.Printf(format, args...) }
func (fatalTB) Fatalf(format string, args ...any) { panic(benchFailure(fmt.Sprintf(format, args...))) }
func (fatalTB) Fatal(args ...any)                 { panic(benchFailure(fmt.Sprint(args...))) }
func (fatalTB) Errorf(format string, args ...any) { panic(benchFailure(fmt.Sprintf(format, args...))) }
func (fatalTB) Skipf(format string, args ...any) {
	panic(benchFailure("skip: " + fmt.Sprintf(format, args...)))
}
