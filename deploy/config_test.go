package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// migrunSource is the command whose settings the examples must match.
const migrunSource = "./cmd/migrun"

// setting is one variable of migrun's configuration.
type setting struct {
	name, def string
}

// flagDef is one flag: whether it takes no value, and the variable it sets.
type flagDef struct {
	isBool bool
	env    string
}

// migrunConfig is what migrun reads, as the binary itself reports it
// (`migrun help --json`): no test here parses migrun's Go source.
type migrunConfig struct {
	vars          map[string]setting            // variable -> setting, every command's
	aliases       map[string]string             // fallback name -> the variable it stands for
	order         map[string][]string           // variable -> its fallbacks, in order
	flags         map[string]map[string]flagDef // command -> flag -> definition
	commands      map[string]bool
	others        map[string]bool // variables read besides the settings (POD_NAME)
	hasVersionVar bool            // make build's -X main.version reaches `migrun version`
}

var (
	migrunConfigOnce sync.Once
	migrunConfigVal  migrunConfig
	migrunConfigErr  error
)

// readMigrunConfig builds migrun once and asks it for its settings.
func readMigrunConfig(t *testing.T) migrunConfig {
	t.Helper()
	migrunConfigOnce.Do(func() { migrunConfigVal, migrunConfigErr = askMigrun() })
	if migrunConfigErr != nil {
		t.Fatalf("asking migrun for its settings: %v", migrunConfigErr)
	}
	return migrunConfigVal
}

// helpDoc is the part of `migrun help --json` these tests read.
type helpDoc struct {
	Commands []struct {
		Name     string
		Settings []struct {
			Env, Flag, Default, Kind string
			Also                     []string
		}
	}
	OtherVariables []string `json:"other_variables"`
}

// askMigrun builds ../cmd/migrun with a stamped version and reads its
// settings from `migrun help --json`.
func askMigrun() (migrunConfig, error) {
	c := migrunConfig{
		vars: map[string]setting{}, aliases: map[string]string{}, order: map[string][]string{},
		flags: map[string]map[string]flagDef{}, commands: map[string]bool{}, others: map[string]bool{},
	}
	dir, err := os.MkdirTemp("", "migrun-deploy-test-")
	if err != nil {
		return c, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "migrun")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=deploy-test", "-o", bin, migrunSource)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		return c, fmt.Errorf("go build %s: %v\n%s", migrunSource, err, out)
	}
	out, err := exec.Command(bin, "help", "--json").Output()
	if err != nil {
		return c, fmt.Errorf("migrun help --json: %v", err)
	}
	var doc helpDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		return c, fmt.Errorf("migrun help --json: %v", err)
	}
	for _, cmd := range doc.Commands {
		c.commands[cmd.Name] = true
		c.flags[cmd.Name] = map[string]flagDef{}
		for _, s := range cmd.Settings {
			c.vars[s.Env] = setting{name: s.Env, def: s.Default}
			c.order[s.Env] = s.Also
			for _, a := range s.Also {
				c.aliases[a] = s.Env
			}
			if s.Flag != "" {
				c.flags[cmd.Name][s.Flag] = flagDef{isBool: s.Kind == "boolean", env: s.Env}
			}
		}
	}
	for _, v := range doc.OtherVariables {
		c.others[v] = true
	}
	version, err := exec.Command(bin, "version").Output()
	if err != nil {
		return c, fmt.Errorf("migrun version: %v", err)
	}
	c.hasVersionVar = strings.TrimSpace(string(version)) == "migrun deploy-test"
	if len(c.vars) == 0 || !c.commands["run"] || len(c.aliases) == 0 {
		return c, fmt.Errorf("migrun help --json lists no settings, no run command or no fallbacks:\n%s", out)
	}
	return c, nil
}

// invocation is one container's migrun command line, parsed as migrun's
// flag package would parse it.
type invocation struct {
	sub     string
	flags   map[string]string // flag name -> value ("true" for a bare bool flag)
	command []string          // what follows the flags (run's command)
}

// parseInvocation splits argv (without "migrun") into the subcommand, the
// flags and the command, with the flag package's rules: one or two dashes,
// -name=value or -name value (bool flags take no separate value), parsing
// stops at "--" or the first non-flag argument.
func parseInvocation(cfg migrunConfig, argv []string) (invocation, error) {
	inv := invocation{flags: map[string]string{}}
	if len(argv) == 0 {
		return inv, fmt.Errorf("no subcommand: name it (%s)", strings.Join(sortedKeys(cfg.commands), ", "))
	}
	inv.sub = argv[0]
	if !cfg.commands[inv.sub] {
		return inv, fmt.Errorf("unknown subcommand %q: cmd/migrun's Main knows %s", inv.sub, strings.Join(sortedKeys(cfg.commands), ", "))
	}
	args := argv[1:]
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return inv, fmt.Errorf("bad flag syntax %q", a)
		}
		name, value, hasValue := strings.Cut(name, "=")
		def, ok := cfg.flags[inv.sub][name]
		if !ok {
			return inv, fmt.Errorf("unknown flag %q: cmd/migrun defines no flag %q", a, name)
		}
		args = args[1:]
		switch {
		case hasValue:
		case def.isBool:
			value = "true"
		case len(args) == 0:
			return inv, fmt.Errorf("flag %q needs a value", a)
		default:
			value, args = args[0], args[1:]
		}
		inv.flags[name] = value
	}
	inv.command = args
	return inv, nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestReadMigrunConfig: the settings read from the binary hold the names the README
// documents, so a silent change in cmd/migrun's shape cannot make every
// later check vacuous.
func TestReadMigrunConfig(t *testing.T) {
	cfg := readMigrunConfig(t)
	for _, v := range []string{"MIGRUN_LOCK_TIMEOUT", "MIGRUN_CONNECT_TIMEOUT", "MIGRUN_NOTIFY", "SLACK_WEBHOOK_URL"} {
		if _, ok := cfg.vars[v]; !ok {
			t.Errorf("no env tag %s found", v)
		}
	}
	if cfg.aliases["DATABASE_URL"] == "" {
		t.Error("DATABASE_URL is not read as a fallback")
	}
	if f := cfg.flags["run"]["lock-timeout"]; f.isBool || f.env != "MIGRUN_LOCK_TIMEOUT" {
		t.Errorf("flag lock-timeout read as %+v, want a value flag setting MIGRUN_LOCK_TIMEOUT", f)
	}
	if _, ok := cfg.flags["wait"]["lock-timeout"]; ok {
		t.Error("wait takes run's --lock-timeout")
	}
	if f, ok := cfg.flags["run"]["ruby-sync"]; !ok || !f.isBool {
		t.Errorf("flag ruby-sync read as %+v (found %v), want a bool flag", f, ok)
	}
	if cfg.vars["MIGRUN_LOCK_TIMEOUT"].def == "" {
		t.Error("MIGRUN_LOCK_TIMEOUT has no envDefault")
	}
}

func TestParseInvocation(t *testing.T) {
	cfg := migrunConfig{
		commands: map[string]bool{"run": true, "wait": true},
		flags: map[string]map[string]flagDef{
			"run": {
				"lock-timeout":    {env: "MIGRUN_LOCK_TIMEOUT"},
				"skip-if-current": {isBool: true, env: "MIGRUN_SKIP_IF_CURRENT"},
			},
			"wait": {"skip-if-current": {isBool: true, env: "MIGRUN_SKIP_IF_CURRENT"}},
		},
	}
	tests := []struct {
		name    string
		argv    []string
		flags   map[string]string
		command []string
		wantErr string
	}{
		{name: "bare", argv: []string{"run"}, flags: map[string]string{}},
		{name: "separator", argv: []string{"run", "--", "bin/rails", "db:migrate"}, flags: map[string]string{}, command: []string{"bin/rails", "db:migrate"}},
		{name: "value with =", argv: []string{"run", "--lock-timeout=5m"}, flags: map[string]string{"lock-timeout": "5m"}},
		{name: "value apart, one dash", argv: []string{"run", "-lock-timeout", "5m", "--", "x"}, flags: map[string]string{"lock-timeout": "5m"}, command: []string{"x"}},
		{name: "bool takes no value", argv: []string{"run", "--skip-if-current", "bundle", "exec"}, flags: map[string]string{"skip-if-current": "true"}, command: []string{"bundle", "exec"}},
		{name: "bool with =", argv: []string{"wait", "--skip-if-current=false"}, flags: map[string]string{"skip-if-current": "false"}},
		{name: "flags stop at the command", argv: []string{"run", "rake", "--bogus"}, flags: map[string]string{}, command: []string{"rake", "--bogus"}},
		{name: "flags after -- are the command's", argv: []string{"run", "--", "--bogus"}, flags: map[string]string{}, command: []string{"--bogus"}},
		{name: "unknown flag", argv: []string{"run", "--lock-timout=5m"}, wantErr: `unknown flag "--lock-timout=5m"`},
		{name: "missing value", argv: []string{"run", "--lock-timeout"}, wantErr: "needs a value"},
		{name: "triple dash", argv: []string{"run", "---lock-timeout=1m"}, wantErr: "bad flag syntax"},
		{name: "unknown subcommand", argv: []string{"migrate"}, wantErr: `unknown subcommand "migrate"`},
		{name: "no subcommand", argv: nil, wantErr: "no subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := parseInvocation(cfg, tt.argv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(inv.flags, tt.flags) || !slices.Equal(inv.command, tt.command) {
				t.Errorf("got flags %v command %q, want %v %q", inv.flags, inv.command, tt.flags, tt.command)
			}
		})
	}
}
