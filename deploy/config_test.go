package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// migrunSource is the package whose configuration the examples must match.
const migrunSource = "../cmd/migrun"

// setting is one variable of migrun's configuration (an env struct tag).
type setting struct {
	name, def string
}

// flagDef is one flag: whether it takes no value, and the variable of the
// field it sets ("" when it sets no tagged field).
type flagDef struct {
	isBool bool
	env    string
}

// migrunConfig is what cmd/migrun reads, as declared in its source.
type migrunConfig struct {
	vars          map[string]setting // env tag name -> setting
	aliases       map[string]string  // fallback name -> the variable it stands for
	order         map[string][]string
	flags         map[string]flagDef
	commands      map[string]bool // Main's subcommands
	literals      map[string]bool // every string literal, for variables read by hand (POD_NAME)
	hasVersionVar bool            // a package-level `version` for -X main.version
}

var (
	migrunConfigOnce sync.Once
	migrunConfigVal  migrunConfig
	migrunConfigErr  error
)

// readMigrunConfig parses ../cmd/migrun once.
func readMigrunConfig(t *testing.T) migrunConfig {
	t.Helper()
	migrunConfigOnce.Do(func() { migrunConfigVal, migrunConfigErr = parseMigrunConfig(migrunSource) })
	if migrunConfigErr != nil {
		t.Fatalf("reading migrun's configuration from %s: %v", migrunSource, migrunConfigErr)
	}
	return migrunConfigVal
}

// parseMigrunConfig collects, from the non-test files of dir: env struct
// tags (with envDefault), the fallbacks map, flag definitions (fs.XxxVar(&c.F,
// "name", ...) and fs.Xxx("name", ...)), the string cases of Main's switch,
// and every string literal.
func parseMigrunConfig(dir string) (migrunConfig, error) {
	c := migrunConfig{
		vars: map[string]setting{}, aliases: map[string]string{}, order: map[string][]string{},
		flags: map[string]flagDef{}, commands: map[string]bool{}, literals: map[string]bool{},
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return c, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return c, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return c, fmt.Errorf("no Go files in %s", dir)
	}

	// Struct fields first: flags name the field they set.
	fieldEnv := map[string]string{}
	for _, f := range files {
		var ferr error
		ast.Inspect(f, func(n ast.Node) bool {
			field, ok := n.(*ast.Field)
			if !ok || field.Tag == nil {
				return true
			}
			tag := reflect.StructTag(unquote(field.Tag.Value))
			if _, ok := tag.Lookup("envPrefix"); ok {
				ferr = fmt.Errorf("%s: envPrefix tags are not understood by this test; extend parseMigrunConfig", fset.Position(field.Pos()))
			}
			raw, ok := tag.Lookup("env")
			if !ok {
				return true
			}
			name, _, _ := strings.Cut(raw, ",")
			if name == "" || name == "-" {
				return true
			}
			c.vars[name] = setting{name: name, def: tag.Get("envDefault")}
			for _, id := range field.Names {
				fieldEnv[id.Name] = name
			}
			return true
		})
		if ferr != nil {
			return c, ferr
		}
	}

	for _, f := range files {
		for _, decl := range f.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok && gd.Tok == token.VAR {
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						switch id.Name {
						case "version":
							c.hasVersionVar = true
						case "fallbacks":
							if i < len(vs.Values) {
								if err := c.readFallbacks(vs.Values[i]); err != nil {
									return c, fmt.Errorf("%s: %w", fset.Position(vs.Pos()), err)
								}
							}
						}
					}
				}
			}
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Name.Name == "Main" && fd.Recv == nil {
				ast.Inspect(fd, func(n ast.Node) bool {
					if cc, ok := n.(*ast.CaseClause); ok {
						for _, e := range cc.List {
							if s, ok := stringLit(e); ok && !strings.HasPrefix(s, "-") {
								c.commands[s] = true
							}
						}
					}
					return true
				})
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BasicLit:
				if s, ok := stringLit(x); ok {
					c.literals[s] = true
				}
			case *ast.CallExpr:
				if name, def, ok := flagDefinition(x, fieldEnv); ok {
					c.flags[name] = def
				}
			}
			return true
		})
	}

	var missing []string
	if len(c.vars) == 0 {
		missing = append(missing, `env:"..." struct tags`)
	}
	if len(c.flags) == 0 {
		missing = append(missing, "flag definitions (fs.StringVar(&c.X, \"name\", ...))")
	}
	if len(c.aliases) == 0 {
		missing = append(missing, "the fallbacks map")
	}
	if !c.commands["run"] {
		missing = append(missing, `Main's case "run"`)
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("found no %s: has the source changed shape?", strings.Join(missing, ", "))
	}
	return c, nil
}

// readFallbacks reads map[string][]string{"PRIMARY": {"ALIAS", ...}}.
func (c *migrunConfig) readFallbacks(e ast.Expr) error {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return fmt.Errorf("fallbacks is not a map literal")
	}
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			return fmt.Errorf("fallbacks: unexpected element")
		}
		primary, ok := stringLit(kv.Key)
		if !ok {
			return fmt.Errorf("fallbacks: a key is not a string literal")
		}
		list, ok := kv.Value.(*ast.CompositeLit)
		if !ok {
			return fmt.Errorf("fallbacks[%q] is not a list literal", primary)
		}
		for _, v := range list.Elts {
			alias, ok := stringLit(v)
			if !ok {
				return fmt.Errorf("fallbacks[%q]: an element is not a string literal", primary)
			}
			c.aliases[alias] = primary
			c.order[primary] = append(c.order[primary], alias)
		}
	}
	return nil
}

// flagDefinition recognises the flag package's definitions: XxxVar(&c.Field,
// "name", value, usage), Var/TextVar(v, "name", ...), Xxx("name", value,
// usage) and Func/BoolFunc("name", usage, fn).
func flagDefinition(call *ast.CallExpr, fieldEnv map[string]string) (string, flagDef, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || len(call.Args) < 3 {
		return "", flagDef{}, false
	}
	method := sel.Sel.Name
	kind, isVar := strings.CutSuffix(method, "Var")
	if method == "Var" || method == "TextVar" {
		kind, isVar = "", true
	}
	if !slices.Contains([]string{"", "Bool", "String", "Duration", "Int", "Int64", "Uint", "Uint64", "Float64", "Text", "Func", "BoolFunc"}, kind) {
		return "", flagDef{}, false
	}
	if kind == "" && !isVar {
		return "", flagDef{}, false
	}
	nameArg := 0
	if isVar {
		nameArg = 1
	}
	name, ok := stringLit(call.Args[nameArg])
	if !ok || name == "" {
		return "", flagDef{}, false
	}
	def := flagDef{isBool: kind == "Bool" || kind == "BoolFunc"}
	if isVar {
		if u, ok := call.Args[0].(*ast.UnaryExpr); ok && u.Op == token.AND {
			if s, ok := u.X.(*ast.SelectorExpr); ok {
				def.env = fieldEnv[s.Sel.Name]
			}
		}
	}
	return name, def, true
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
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
		def, ok := cfg.flags[name]
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

// TestReadMigrunConfig: the source reader finds the names the README
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
	if f := cfg.flags["lock-timeout"]; f.isBool || f.env != "MIGRUN_LOCK_TIMEOUT" {
		t.Errorf("flag lock-timeout read as %+v, want a value flag setting MIGRUN_LOCK_TIMEOUT", f)
	}
	if f, ok := cfg.flags["ruby-sync"]; !ok || !f.isBool {
		t.Errorf("flag ruby-sync read as %+v (found %v), want a bool flag", f, ok)
	}
	if cfg.vars["MIGRUN_LOCK_TIMEOUT"].def == "" {
		t.Error("MIGRUN_LOCK_TIMEOUT has no envDefault")
	}
}

func TestParseInvocation(t *testing.T) {
	cfg := migrunConfig{
		commands: map[string]bool{"run": true, "wait": true},
		flags: map[string]flagDef{
			"lock-timeout":    {env: "MIGRUN_LOCK_TIMEOUT"},
			"skip-if-current": {isBool: true, env: "MIGRUN_SKIP_IF_CURRENT"},
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
