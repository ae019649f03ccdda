package main

import (
	"testing"
	"time"
)

func TestOriginOf(t *testing.T) {
	for pkg, want := range map[string]initOrigin{
		"runtime":                                originStd,
		"crypto/internal/fips140/sha256":         originStd,
		"vendor/golang.org/x/net/dns/dnsmessage": originStd,
		"golang.org/x/text/language":             originThirdParty,
		"github.com/jackc/pgx/v5/pgtype":         originThirdParty,
		"github.com/slack-go/slack":              originThirdParty,
		"filippo.io/edwards25519":                originThirdParty,
		"github.com/migrun/migrun/dburl":         originOwn,
		"github.com/migrun/migrun-other/x":       originThirdParty,
		"main":                                   originOwn,
	} {
		if got := originOf(pkg); got != want {
			t.Errorf("originOf(%q) = %v, want %v", pkg, got, want)
		}
	}
}

func TestInitTraces(t *testing.T) {
	var tr initTraces
	for _, run := range []string{
		"init runtime @0.01 ms, 0.050 ms clock, 0 bytes, 0 allocs\n" +
			"init github.com/jackc/pgx/v5 @0.9 ms, 0.100 ms clock, 312 bytes, 7 allocs\n" +
			"some other line\n" +
			"init github.com/migrun/migrun/lock @1.0 ms, 0.020 ms clock, 16 bytes, 1 allocs\n" +
			"init main @1.1 ms, 0.002 ms clock, 16 bytes, 6 allocs\n",
		"init runtime @0.01 ms, 0.070 ms clock, 0 bytes, 0 allocs\n" +
			"init github.com/jackc/pgx/v5 @0.9 ms, 0.300 ms clock, 312 bytes, 7 allocs\n" +
			"init github.com/migrun/migrun/lock @1.0 ms, 0 ms clock, 0 bytes, 0 allocs\n" +
			"init main @1.1 ms, 0.004 ms clock, 16 bytes, 6 allocs\n",
	} {
		tr.add(parseInitTrace([]byte(run)))
	}
	us := func(v float64) time.Duration { return time.Duration(v * float64(time.Microsecond)) }
	for _, c := range []struct {
		o     initOrigin
		want  time.Duration
		count int
	}{{originStd, us(60), 1}, {originThirdParty, us(200), 1}, {originOwn, us(13), 2}} {
		if got := tr.medianOf(c.o); got != c.want {
			t.Errorf("medianOf(%v) = %v, want %v", c.o, got, c.want)
		}
		if got := tr.count(c.o); got != c.count {
			t.Errorf("count(%v) = %d, want %d", c.o, got, c.count)
		}
	}
	if got := tr.medianTotal(); got != us(273) {
		t.Errorf("medianTotal = %v, want 273µs", got)
	}
	if top := tr.top(); len(top) != 4 || top[0].pkg != "github.com/jackc/pgx/v5" || top[3].pkg != "main" {
		t.Errorf("top = %+v", top)
	}
}
