package lock

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/migrun/migrun/internal/testdb"
	"github.com/migrun/migrun/sessions"
)

// TestOptionsProbe: a PostgreSQL lock asked to probe startup options
// (OptionsProber) finds what sessions.Probe finds, directly and through
// PgBouncer (which refuses them), and takes the lock all the same.
func TestOptionsProbe(t *testing.T) {
	for _, tt := range []struct {
		name, pool string // pool "": direct
		mode       Mode
	}{
		{"direct/session", "", ModeSession},
		{"direct/transaction", "", ModeTransaction},
		{"pgbouncer/session", "session", ModeSession},
		{"pgbouncer/transaction", "transaction", ModeTransaction},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testdb.Postgres(t)
			db, raw := srv.CreateDatabase(t)
			if tt.pool != "" {
				raw = srv.PgBouncer(t, tt.pool, 4).URL(db)
			}
			u := mustParse(t, raw)
			l := newLocker(t, u, tt.mode, "app")
			prober, ok := l.(OptionsProber)
			if !ok {
				t.Fatalf("%T is not an OptionsProber", l)
			}
			prober.ProbeStartupOptions()
			if err := lockWithin(t, l, 30*time.Second); err != nil {
				t.Fatalf("Lock() = %v", err)
			}
			got, ok := prober.OptionsProbed()
			if !ok {
				t.Fatal("OptionsProbed() after Lock: not known")
			}
			t.Logf("OptionsProbed() = %+v", got)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			want, err := sessions.Probe(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			refused := strings.Contains(want.Why, "refuses")
			if got.Applied != want.OptionsReach || (got.Refused != nil) != refused || (got.Applied && got.Version != want.Version) {
				t.Errorf("OptionsProbed() = %+v; sessions.Probe = %+v", got, want)
			}
			if tt.pool == "" && (!got.Applied || got.Version < 90600) {
				t.Errorf("direct: OptionsProbed() = %+v, want the options applied and a version", got)
			}
		})
	}
}

// TestOptionsProbeNotAsked: a lock not asked to probe sends no options
// of its own and knows no answer.
func TestOptionsProbeNotAsked(t *testing.T) {
	srv := testdb.Postgres(t)
	_, raw := srv.CreateDatabase(t)
	l := newLocker(t, mustParse(t, raw), ModeSession, "app")
	if err := lockWithin(t, l, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, ok := l.(OptionsProber).OptionsProbed(); ok {
		t.Errorf("OptionsProbed() = %+v, true; want unknown when not asked", got)
	}
}
