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
			for range rounds {
				marks := filepath.Join(t.TempDir(), "marks")
				results := runConcurrently(t, copies(invocation{env: env, args: markedRun(marks, "0")}, runners)...)
				assertSucceeded(t, results)
				assertNoOverlap(t, marks, runners)
				assertNoSecret(t, srv.Password(), results...)
			}
		})
	}
}
