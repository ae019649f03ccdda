package integration

import (
	"path/filepath"
	"testing"
)

// TestFiftyRunners: 50 runners started at once against one lock, for several
// rounds, on PostgreSQL and on MariaDB: every one exits 0, and their
// commands' start and end marks never interleave.
func TestFiftyRunners(t *testing.T) {
	const runners, rounds = 50, 3
	for kind, srv := range servers(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, url := srv.CreateDatabase(t)
			env := map[string]string{"DATABASE_URL": url}
			for round := range rounds {
				marks := filepath.Join(t.TempDir(), "marks")
				started := make([]*running, 0, runners)
				for range runners {
					started = append(started, invocation{env: env, args: markedRun(marks, "0")}.start(t))
				}
				var results []result
				for i, r := range started {
					res := r.waitWithin(t, 5*timeoutLong)
					results = append(results, res)
					if res.status != 0 {
						t.Errorf("round %d: runner %d exited %d:\n%s", round, i, res.status, res.stderr)
					}
				}
				assertNoOverlap(t, marks, runners)
				assertNoSecret(t, srv.Password(), results...)
			}
		})
	}
}
