package main

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// A settings struct declares each setting of a subcommand in one field,
// its tags saying everything about it:
//
//	env:"MIGRUN_LOCK_TIMEOUT"   the variable (read by caarlos0/env)
//	envDefault:"30m"            the default
//	also:"DATABASE_URL"         other variables read when the first is unset, in order
//	flag:"lock-timeout"         the flag, which wins over the variables
//	help:"..."                  one line for --help
//	secret:"true"               never printed: help shows no value, errors no value
//	private:"true"              only migrun needs it: not passed on to the command
//
// Embedded structs group settings that several subcommands share. Every
// field type but string implements encoding.TextUnmarshaler, so a value
// parses the same way, with the same error, from a variable and a flag.
type setting struct {
	Env     string   `json:"env"`
	Also    []string `json:"also,omitempty"`
	Flag    string   `json:"flag,omitempty"`
	Def     string   `json:"default,omitempty"`
	Help    string   `json:"help"`
	Kind    string   `json:"kind"` // duration, boolean, keyword or string
	Secret  bool     `json:"secret,omitempty"`
	Private bool     `json:"private,omitempty"`

	field  string        // the Go field, as caarlos0/env names it in errors
	value  reflect.Value // the field, addressable
	source string        // where the value came from: a variable, "--flag", or "" for the default
}

// settingsOf lists the settings of the struct cfg points to.
func settingsOf(cfg any) []*setting {
	var out []*setting
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(v.Field(i))
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			if name == "" || name == "-" {
				continue
			}
			s := &setting{
				Env:     name,
				Flag:    f.Tag.Get("flag"),
				Def:     f.Tag.Get("envDefault"),
				Help:    f.Tag.Get("help"),
				Secret:  f.Tag.Get("secret") == "true",
				Private: f.Tag.Get("private") == "true",
				field:   f.Name,
				value:   v.Field(i),
			}
			switch s.value.Addr().Interface().(type) {
			case *duration:
				s.Kind = "duration"
			case *boolean:
				s.Kind = "boolean"
			case *count:
				s.Kind = "count"
			case *string:
				s.Kind = "string"
			default:
				s.Kind = "keyword"
			}
			if also := f.Tag.Get("also"); also != "" {
				s.Also = strings.Split(also, ",")
			}
			out = append(out, s)
		}
	}
	walk(reflect.ValueOf(cfg).Elem())
	return out
}

// settingError is a bad value, named the way the user gave it.
type settingError struct {
	name   string // e.g. MIGRUN_LOCK_TIMEOUT or --lock-timeout
	value  string
	secret bool
	err    error
}

func (e *settingError) Error() string {
	if e.secret || e.value == "" {
		return fmt.Sprintf("%s: %v", e.name, e.err)
	}
	return fmt.Sprintf("%s=%q: %v", e.name, e.value, e.err)
}

func (e *settingError) Unwrap() error { return e.err }

// errHelp: --help was asked for; the help has been printed.
var errHelp = flag.ErrHelp

// parsed is a subcommand's settings after parsing: the arguments left
// after the flags, and each setting with where its value came from.
type parsed struct {
	args     []string
	settings []*setting
}

// parseSettings fills cfg from environ and then from args (flags win), and
// returns what is left of args after the flags. Errors are one line naming
// the variable or flag; help goes to usage with errHelp.
func parseSettings(cfg any, name string, args []string, environ map[string]string, usage io.Writer, printHelp func(io.Writer)) (*parsed, error) {
	settings := settingsOf(cfg)
	environ = maps.Clone(environ)
	if environ == nil {
		environ = map[string]string{}
	}
	for _, s := range settings {
		if environ[s.Env] != "" {
			s.source = s.Env
			continue
		}
		for _, other := range s.Also {
			if v := environ[other]; v != "" {
				environ[s.Env] = v
				s.source = other
				break
			}
		}
	}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: environ}); err != nil {
		return nil, envError(err, settings, environ)
	}

	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by the caller
	fs.Usage = func() {}
	values := map[string]*flagValue{}
	for _, s := range settings {
		if s.Flag != "" {
			values[s.Flag] = &flagValue{s: s}
			fs.Var(values[s.Flag], s.Flag, s.Help)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(usage)
			return nil, errHelp
		}
		for _, v := range values {
			if v.err != nil {
				return nil, v.err
			}
		}
		return nil, flagError(err, name)
	}
	fs.Visit(func(f *flag.Flag) { values[f.Name].s.source = "--" + f.Name })
	return &parsed{args: fs.Args(), settings: settings}, nil
}

// lookup finds the setting stored at ptr, a pointer to a field of the
// parsed struct.
func (p *parsed) lookup(ptr any) *setting {
	want := reflect.ValueOf(ptr).Pointer()
	for _, s := range p.settings {
		if s.value.Addr().Pointer() == want {
			return s
		}
	}
	panic(fmt.Sprintf("no setting at %p", ptr))
}

// invalid is the error for the setting at ptr, named as the user gave it.
func (p *parsed) invalid(ptr any, format string, args ...any) error {
	s := p.lookup(ptr)
	return &settingError{name: s.name(), value: s.text(), secret: s.Secret, err: fmt.Errorf(format, args...)}
}

// given reports whether the setting at ptr was given, by a flag or a variable.
func (p *parsed) given(ptr any) bool { return p.lookup(ptr).source != "" }

// name is the setting as the user gave it, or its variable when defaulted.
func (s *setting) name() string {
	if s.source != "" {
		return s.source
	}
	return s.Env
}

// text is the setting's value as text (secrets included: callers check Secret).
func (s *setting) text() string {
	if m, ok := s.value.Addr().Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(s.value.Interface())
}

// flagValue sets a setting from a flag, parsing as the variable would.
type flagValue struct {
	s   *setting
	err *settingError // the parse error, kept to report it in our words
}

func (f *flagValue) String() string {
	if f == nil || f.s == nil {
		return ""
	}
	return f.s.Def
}

func (f *flagValue) Set(text string) error {
	var err error
	switch u := f.s.value.Addr().Interface().(type) {
	case encoding.TextUnmarshaler:
		err = u.UnmarshalText([]byte(text))
	case *string:
		*u = text
	default:
		err = fmt.Errorf("unsupported setting type %s", f.s.value.Type())
	}
	if err != nil {
		f.err = &settingError{name: "--" + f.s.Flag, value: text, secret: f.s.Secret, err: err}
	}
	return err
}

// IsBoolFlag lets boolean flags stand alone (--skip-if-current).
func (f *flagValue) IsBoolFlag() bool { return f.s.Kind == "boolean" }

// envError rewrites caarlos0/env's errors, which name Go fields, in terms
// of the variables the user set.
func envError(err error, settings []*setting, environ map[string]string) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) || len(agg.Errors) == 0 {
		return err
	}
	var pe env.ParseError
	if !errors.As(agg.Errors[0], &pe) {
		return agg.Errors[0]
	}
	for _, s := range settings {
		if s.field == pe.Name {
			return &settingError{name: s.name(), value: environ[s.Env], secret: s.Secret, err: innermost(pe.Err)}
		}
	}
	return agg.Errors[0]
}

// innermost reaches the cause, which says what is wrong with the value only.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// flagError rewrites the flag package's errors into one line.
func flagError(err error, command string) error {
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("unknown flag --%s (see %s --help)", strings.TrimLeft(f, "-"), command)
	}
	if f, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("flag --%s needs a value (see %s --help)", strings.TrimLeft(f, "-"), command)
	}
	return err
}

// printSettings writes the flags of settings, each with its variable and
// built-in default: never the environment's values, which may be secrets.
func printSettings(out io.Writer, settings []*setting) {
	for _, s := range settings {
		if s.Flag == "" {
			continue
		}
		vars := append([]string{s.Env}, s.Also...)
		def := ""
		if s.Def != "" && !s.Secret {
			def = "; default " + s.Def
		}
		arg := " " + strings.ToUpper(s.Kind)
		if s.Kind == "boolean" {
			arg = ""
		}
		fmt.Fprintf(out, "  --%s%s\n      %s (%s%s)\n", s.Flag, arg, s.Help, strings.Join(vars, ", "), def)
	}
}
