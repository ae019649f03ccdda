package dbconn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

func TestPostgresIdentity(t *testing.T) {
	tests := []struct{ name, want string }{
		{"migrun", "migrun"},
		{strings.Repeat("a", 70), strings.Repeat("a", 63)},
		{strings.Repeat("a", 62) + "é", strings.Repeat("a", 62)}, // not half a character
		{"bad\xffbyte", "bad?byte"},
	}
	for _, tt := range tests {
		cfg := &pgx.ConnConfig{}
		cfg.RuntimeParams = map[string]string{}
		PostgresIdentity(cfg, tt.name)
		got := cfg.RuntimeParams["application_name"]
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("PostgresIdentity(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMySQLIdentity(t *testing.T) {
	cfg := mysql.NewConfig()
	MySQLIdentity(cfg, "migrun job:a,b")
	if cfg.ConnectionAttributes != "program_name:migrun job_a_b" {
		t.Errorf("ConnectionAttributes = %q", cfg.ConnectionAttributes)
	}
	cfg.ConnectionAttributes = "team:db"
	MySQLIdentity(cfg, "migrun")
	if cfg.ConnectionAttributes != "team:db,program_name:migrun" {
		t.Errorf("ConnectionAttributes = %q, want the caller's kept", cfg.ConnectionAttributes)
	}
}

// TestRetryUntil: a deadline already near gives up by it, with
// ErrUnavailable; a permanent failure at once.
func TestRetryUntil(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := time.Now()
	err := RetryUntil(context.Background(), start.Add(600*time.Millisecond), quiet, "db", func(context.Context) error {
		return errors.New("connection refused")
	})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("RetryUntil = %v, want ErrUnavailable with the cause", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
	calls := 0
	err = RetryUntil(context.Background(), time.Now().Add(time.Hour), quiet, "db", func(context.Context) error {
		calls++
		return &Permanent{errors.New("password authentication failed")}
	})
	if !errors.Is(err, ErrUnavailable) || calls != 1 {
		t.Errorf("RetryUntil = %v after %d calls, want ErrUnavailable after 1", err, calls)
	}
}

func TestReadOptionsProbe(t *testing.T) {
	tests := []struct {
		setting, version []byte
		want             OptionsProbe
		wantErr          bool
	}{
		{setting: []byte("on"), version: []byte("150020"), want: OptionsProbe{Applied: true, Version: 150020}},
		{setting: nil, version: []byte("90624"), want: OptionsProbe{Version: 90624}}, // the options did not arrive
		{setting: []byte("on"), version: []byte(""), wantErr: true},
		{setting: []byte("on"), version: []byte("15.2"), wantErr: true},
		{setting: []byte("on"), version: nil, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ReadOptionsProbe(tt.setting, tt.version)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ReadOptionsProbe(%q, %q) = %+v, %v; want %+v, error %v", tt.setting, tt.version, got, err, tt.want, tt.wantErr)
		}
	}
}
