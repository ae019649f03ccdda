package sessions

import (
	"maps"
	"strings"
	"testing"
	"time"
)

const pw = "s3cr%40t" // as written in the URLs; decoded "s3cr@t"

// The PGOPTIONS migrun adds for D = 30s and a 5s lock timeout on PostgreSQL 15.
const pg15Options = "-c tcp_keepalives_idle=14s -c tcp_keepalives_interval=1s -c tcp_keepalives_count=5 -c tcp_user_timeout=28s -c client_connection_check_interval=1s -c lock_timeout=5s"

func TestApply(t *testing.T) {
	both := Settings{DeadClientTimeout: 30 * time.Second, LockTimeout: 5 * time.Second}
	pg15 := Postgres{OptionsReach: true, Version: 150004}
	const (
		pgURL    = "postgres://app:" + pw + "@db.internal:5432/app"
		mysqlURL = "mysql2://app:" + pw + "@db.internal/app"
		initLock = "init_command=SET%20%40%40SESSION.lock_wait_timeout%3D5"
	)
	tests := []struct {
		name      string
		env       map[string]string
		settings  Settings
		pg        Postgres
		want      map[string]string // variables that must have these values ("" : unset)
		wantNotes []string          // substrings, one per note, in order
	}{
		{
			name: "off: nothing changes", env: map[string]string{"DATABASE_URL": mysqlURL, "PGOPTIONS": "-c a.b=1"},
			pg: pg15, want: map[string]string{"DATABASE_URL": mysqlURL, "PGOPTIONS": "-c a.b=1"},
		},
		{
			name: "postgres: PGOPTIONS set", env: map[string]string{"DATABASE_URL": pgURL},
			settings: both, pg: pg15, want: map[string]string{"DATABASE_URL": pgURL, "PGOPTIONS": pg15Options},
		},
		{
			name: "postgres: an existing PGOPTIONS is kept, ours appended", env: map[string]string{"PGOPTIONS": `-c search_path=a,\ b  --statement-timeout=0`},
			settings: both, pg: pg15, want: map[string]string{"PGOPTIONS": `-c search_path=a,\ b  --statement-timeout=0 ` + pg15Options},
		},
		{
			name: "postgres: names PGOPTIONS sets itself are the app's", env: map[string]string{"PGOPTIONS": `-clock_timeout=1s --TCP-User-Timeout=9s -c x=\ -c\ tcp_keepalives_count=2`},
			settings: both, pg: pg15,
			want: map[string]string{"PGOPTIONS": `-clock_timeout=1s --TCP-User-Timeout=9s -c x=\ -c\ tcp_keepalives_count=2 ` +
				"-c tcp_keepalives_idle=14s -c tcp_keepalives_interval=1s -c tcp_keepalives_count=5 -c client_connection_check_interval=1s"},
			wantNotes: []string{"PGOPTIONS already sets tcp_user_timeout, lock_timeout: the app's value kept"},
		},
		{
			name: "postgres: lock timeout only, in milliseconds", env: map[string]string{},
			settings: Settings{LockTimeout: 1500 * time.Millisecond}, pg: pg15, want: map[string]string{"PGOPTIONS": "-c lock_timeout=1500ms"},
		},
		{
			name: "postgres: small bound", env: map[string]string{},
			settings: Settings{DeadClientTimeout: 6 * time.Second}, pg: pg15,
			want: map[string]string{"PGOPTIONS": "-c tcp_keepalives_idle=2s -c tcp_keepalives_interval=1s -c tcp_keepalives_count=2 -c tcp_user_timeout=4s -c client_connection_check_interval=1s"},
		},
		{
			name: "postgres: options do not reach the server", env: map[string]string{"DATABASE_URL": pgURL, "PGOPTIONS": "-c a.b=1"},
			settings: both, pg: Postgres{Why: "127.0.0.1:6432/app refuses connections that carry startup options (unsupported startup parameter: options (SQLSTATE 08P01))"},
			want:      map[string]string{"DATABASE_URL": pgURL, "PGOPTIONS": "-c a.b=1"},
			wantNotes: []string{"PGOPTIONS not set: 127.0.0.1:6432/app refuses connections that carry startup options (unsupported startup parameter: options (SQLSTATE 08P01)); the command's PostgreSQL sessions get no dead-client detection (a vanished migration keeps its locks until TCP keepalive gives up, about two hours, instead of 30s) and no lock timeout (a migration waits for a table lock as long as it takes, instead of 5s)"},
		},
		{
			name: "postgres: not probed says nothing", env: map[string]string{"DATABASE_URL": pgURL},
			settings: both, want: map[string]string{"DATABASE_URL": pgURL, "PGOPTIONS": ""},
		},
		{
			name: "postgres 13: no client_connection_check_interval", env: map[string]string{},
			settings: both, pg: Postgres{OptionsReach: true, Version: 130011},
			want:      map[string]string{"PGOPTIONS": "-c tcp_keepalives_idle=14s -c tcp_keepalives_interval=1s -c tcp_keepalives_count=5 -c tcp_user_timeout=28s -c lock_timeout=5s"},
			wantNotes: []string{"PostgreSQL 13 has no client_connection_check_interval (14+)"},
		},
		{
			name: "postgres 9.6: keepalives only", env: map[string]string{},
			settings: both, pg: Postgres{OptionsReach: true, Version: 90624},
			want:      map[string]string{"PGOPTIONS": "-c tcp_keepalives_idle=14s -c tcp_keepalives_interval=1s -c tcp_keepalives_count=5 -c lock_timeout=5s"},
			wantNotes: []string{"PostgreSQL 9.6 has no tcp_user_timeout (12+) or client_connection_check_interval (14+)"},
		},
		{
			name: "postgres: version unknown", env: map[string]string{},
			settings: both, pg: Postgres{OptionsReach: true},
			want:      map[string]string{"PGOPTIONS": "-c tcp_keepalives_idle=14s -c tcp_keepalives_interval=1s -c tcp_keepalives_count=5 -c lock_timeout=5s"},
			wantNotes: []string{"PostgreSQL version unknown"},
		},
		{
			name: "postgres: a URL's own options parameter gets them too", settings: both, pg: pg15,
			env: map[string]string{"DATABASE_URL": pgURL + "?options=-c%20search_path%3Dapp%20-c%20lock_timeout%3D2s&pool=5#x", "ANIMALS_DATABASE_URL": pgURL + "?options="},
			want: map[string]string{
				"DATABASE_URL": pgURL + "?options=-c%20search_path%3Dapp%20-c%20lock_timeout%3D2s" +
					"%20-c%20tcp_keepalives_idle%3D14s%20-c%20tcp_keepalives_interval%3D1s%20-c%20tcp_keepalives_count%3D5%20-c%20tcp_user_timeout%3D28s%20-c%20client_connection_check_interval%3D1s&pool=5#x",
				"ANIMALS_DATABASE_URL": pgURL + "?options=", // empty: libpq falls back to PGOPTIONS
				"PGOPTIONS":            pg15Options,
			},
			wantNotes: []string{"DATABASE_URL's options parameter already sets lock_timeout: the app's value kept"},
		},
		{
			name: "mysql2: URL without a query", env: map[string]string{"DATABASE_URL": mysqlURL},
			settings: both, want: map[string]string{"DATABASE_URL": mysqlURL + "?" + initLock},
		},
		{
			name: "mysql2: URL with a query and a fragment; other databases too", settings: both,
			env: map[string]string{"DATABASE_URL": mysqlURL + "?pool=5&encoding=utf8mb4#frag", "ANIMALS_DATABASE_URL": " " + mysqlURL + "?\n",
				"MIGRUN_DATABASE_URL": mysqlURL, "CACHE_DATABASE_URL": "sqlite3:db/cache.sqlite3", "REDIS_URL": "redis://h/0"},
			want: map[string]string{
				"DATABASE_URL":         mysqlURL + "?pool=5&encoding=utf8mb4&" + initLock + "#frag",
				"ANIMALS_DATABASE_URL": mysqlURL + "?" + initLock,
				"MIGRUN_DATABASE_URL":  mysqlURL,
				"CACHE_DATABASE_URL":   "sqlite3:db/cache.sqlite3",
				"REDIS_URL":            "redis://h/0",
				"PGOPTIONS":            "",
			},
		},
		{
			name: "mysql2: the app's own init_command is kept; its wait_timeout untouched", settings: both,
			env:       map[string]string{"DATABASE_URL": mysqlURL + "?wait_timeout=600&init_command=SET%20sql_safe_updates%3D1"},
			want:      map[string]string{"DATABASE_URL": mysqlURL + "?wait_timeout=600&init_command=SET%20sql_safe_updates%3D1"},
			wantNotes: []string{"DATABASE_URL sets init_command itself: lock_wait_timeout=5 not added"},
		},
		{
			name: "mysql2: an empty init_command is no setting (Rails drops blank values)", settings: both,
			env:  map[string]string{"DATABASE_URL": mysqlURL + "?wait_timeout=&init_command="},
			want: map[string]string{"DATABASE_URL": mysqlURL + "?wait_timeout=&" + initLock},
		},
		{
			// wait_timeout would end a live migration's idle sessions too
			// (Rails' own migration-lock connection among them).
			name: "mysql2: no wait_timeout for the dead-client bound", settings: Settings{DeadClientTimeout: 30 * time.Second},
			env:  map[string]string{"DATABASE_URL": mysqlURL},
			want: map[string]string{"DATABASE_URL": mysqlURL},
		},
		{
			name: "mysql2: lock_wait_timeout rounded up to whole seconds, said once", settings: Settings{LockTimeout: 1500 * time.Millisecond},
			env: map[string]string{"DATABASE_URL": mysqlURL, "ANIMALS_DATABASE_URL": mysqlURL},
			want: map[string]string{"DATABASE_URL": mysqlURL + "?init_command=SET%20%40%40SESSION.lock_wait_timeout%3D2",
				"ANIMALS_DATABASE_URL": mysqlURL + "?init_command=SET%20%40%40SESSION.lock_wait_timeout%3D2"},
			wantNotes: []string{"MySQL's lock_wait_timeout takes whole seconds: 1.5s rounded up to 2s"},
		},
		{
			name: "trilogy: nothing it can take", settings: both,
			env:       map[string]string{"DATABASE_URL": "trilogy://app:" + pw + "@h/app"},
			want:      map[string]string{"DATABASE_URL": "trilogy://app:" + pw + "@h/app"},
			wantNotes: []string{"DATABASE_URL uses trilogy, which has no init_command: no lock_wait_timeout for its sessions"},
		},
		{
			// A dead-client bound alone: nothing for MySQL, and nothing to say.
			name: "mysql: no DATABASE_URL, no DDL lock timeout", settings: Settings{DeadClientTimeout: 30 * time.Second},
			env:  map[string]string{"MIGRUN_DATABASE_URL": mysqlURL},
			want: map[string]string{"MIGRUN_DATABASE_URL": mysqlURL, "DATABASE_URL": ""},
		},
		{
			name: "mysql: no DATABASE_URL, Rails reads database.yml", settings: both,
			env:       map[string]string{"MIGRUN_DATABASE_URL": mysqlURL},
			want:      map[string]string{"MIGRUN_DATABASE_URL": mysqlURL, "DATABASE_URL": ""},
			wantNotes: []string{"no DATABASE_URL: Rails reads its MySQL database from config/database.yml, which migrun cannot change; set variables: { lock_wait_timeout: 5 } there"},
		},
		{
			name: "mysql2: a URL that does not parse is left alone, without echoing it", settings: both,
			env:       map[string]string{"DATABASE_URL": "mysql2://app:" + pw + "@h:99999/app"},
			want:      map[string]string{"DATABASE_URL": "mysql2://app:" + pw + "@h:99999/app"},
			wantNotes: []string{"DATABASE_URL: settings not added, the URL does not parse: invalid database URL: bad port"},
		},
		{
			name: "postgres URL untouched by the MySQL part, mysql2 by the PostgreSQL part", settings: both, pg: pg15,
			env:  map[string]string{"DATABASE_URL": pgURL + "?sslmode=disable", "OTHER_DATABASE_URL": mysqlURL + "?encoding=utf8mb4"},
			want: map[string]string{"DATABASE_URL": pgURL + "?sslmode=disable", "OTHER_DATABASE_URL": mysqlURL + "?encoding=utf8mb4&" + initLock, "PGOPTIONS": pg15Options},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.env)
			got, notes := Apply(tt.env, tt.settings, tt.pg)
			if !maps.Equal(tt.env, before) {
				t.Errorf("Apply modified its input: %v", tt.env)
			}
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s =\n  %q\nwant\n  %q", k, got[k], want)
				}
			}
			for k, v := range tt.env {
				if _, checked := tt.want[k]; !checked && got[k] != v {
					t.Errorf("%s changed to %q", k, got[k])
				}
			}
			if len(notes) != len(tt.wantNotes) {
				t.Fatalf("notes:\n  %s\nwant %d", strings.Join(notes, "\n  "), len(tt.wantNotes))
			}
			for i, want := range tt.wantNotes {
				if !strings.Contains(notes[i], want) {
					t.Errorf("note %d:\n  %s\nwant it to contain\n  %s", i, notes[i], want)
				}
			}
			for _, n := range notes {
				if strings.Contains(n, pw) || strings.Contains(n, "s3cr@t") || strings.Contains(n, "://") {
					t.Errorf("a note shows a URL or its password: %s", n)
				}
			}
		})
	}
}

func TestDerivations(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want keepalive
	}{
		{30 * time.Second, keepalive{idle: 14 * time.Second, interval: time.Second, count: 5, userTimeout: 28 * time.Second}},
		{6 * time.Second, keepalive{idle: 2 * time.Second, interval: time.Second, count: 2, userTimeout: 4 * time.Second}},
		{7500 * time.Millisecond, keepalive{idle: 2 * time.Second, interval: time.Second, count: 3, userTimeout: 5500 * time.Millisecond}},
		{10 * time.Minute, keepalive{idle: 299 * time.Second, interval: time.Second, count: 5, userTimeout: 598 * time.Second}},
		{time.Second, keepalive{idle: time.Second, interval: time.Second, count: 1, userTimeout: time.Second}},
	}
	for _, tt := range tests {
		if got := deadClient(tt.d); got != tt.want {
			t.Errorf("deadClient(%s) = %+v, want %+v", tt.d, got, tt.want)
		}
		if k := deadClient(tt.d); tt.d >= 4*time.Second && k.idle+time.Duration(k.count)*k.interval > k.userTimeout {
			t.Errorf("deadClient(%s): idle + count*interval exceeds L", tt.d)
		}
	}
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 500 * time.Millisecond: "500ms", 1500 * time.Millisecond: "1500ms", time.Nanosecond: "1ms", 2 * time.Minute: "120s"} {
		if got := pgDuration(d); got != want {
			t.Errorf("pgDuration(%s) = %s, want %s", d, got, want)
		}
	}
	for d, want := range map[time.Duration]int{5 * time.Second: 5, 1500 * time.Millisecond: 2, time.Millisecond: 1} {
		if got := mysqlSeconds(d); got != want {
			t.Errorf("mysqlSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}

func TestOptionNames(t *testing.T) {
	tests := map[string][]string{
		"":                                  nil,
		"-c a=1 -cB=2 --c-d=3 -c":           {"a", "b", "c_d"},
		`-c x=a\ -c\ y=2   -c	z=3`:          {"x", "z"},
		`-c search_path="a b"`:              {"search_path"},
		"-B 100 -c lock_timeout=0 -- -e -c": {"lock_timeout"},
	}
	for opts, want := range tests {
		got := optionNames(opts)
		if len(got) != len(want) {
			t.Errorf("optionNames(%q) = %v, want %v", opts, got, want)
		}
		for _, n := range want {
			if !got[n] {
				t.Errorf("optionNames(%q) lacks %q: %v", opts, n, got)
			}
		}
	}
}
