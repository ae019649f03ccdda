package rails

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// runRuby runs a Ruby script that reads JSON on stdin and writes JSON on
// stdout, in dir ("" for the test's). Without Ruby the test skips, or
// fails under CI=true: the comparisons with Ruby are what keep migrun's
// reading of Rails honest.
func runRuby(t *testing.T, dir, script string, in, out any) {
	t.Helper()
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ruby is not installed (apt-get install ruby ruby-activesupport): %v", err)
		}
		t.Skipf("ruby is not installed: %v", err)
	}
	input, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ruby, "-rjson", "-e", script)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	output, err := cmd.Output()
	if err != nil {
		t.Fatalf("ruby: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(output, out); err != nil {
		t.Fatalf("ruby's output: %v\n%s", err, output)
	}
}

// What Ruby 3.1's String#to_i answered (ruby -e 'p "…".to_i').
var rubyToI = []struct{ in, want string }{
	{"20240101000000", "20240101000000"},
	{" 0012", "12"},
	{"1_2", "12"},
	{"1__2", "1"},
	{"+5", "5"},
	{"-5", "-5"},
	{"0x1", "0"},
	{"0d12", "12"},
	{"0D12", "12"},
	{"0b1", "0"},
	{"0o7", "0"},
	{"012", "12"},
	{"_12", "0"},
	{"12_", "12"},
	{"\t\n 7", "7"},
	{"\v8", "8"},
	{"\f9", "9"},
	{"\r10", "10"},
	{"\u00a011", "0"},
	{"+-1", "0"},
	{" +1", "1"},
	{"+ 1", "0"},
	{"1 2", "1"},
	{"0_1", "1"},
	{"00", "0"},
	{"", "0"},
	{"abc", "0"},
	{"12abc", "12"},
	{"1e5", "1"},
	{"1.9", "1"},
	{"0d", "0"},
	{"0d_12", "0"},
	{"0_d12", "0"},
	{"+0d12", "12"},
	{"-0d12", "-12"},
	{" -0012", "-12"},
	{"99999999999999999999999", "99999999999999999999999"},
	{"+_1", "0"},
	{"1_2_3", "123"},
	{"0d1_2", "12"},
	{"\x001", "0"},
	{"0d1__2", "1"},
	{"0d12_", "12"},
	{"0_0d12", "0"},
	{"0__1", "0"},
	{"-_1", "0"},
	{"-0", "0"},
	{"0d0_1", "1"},
	{"00d12", "0"},
	{"0d-1", "0"},
	{"0d+1", "0"},
	{" 0d12", "12"},
	{"1_a", "1"},
	{"_", "0"},
	{"+", "0"},
	{"-", "0"},
	{"0_", "0"},
	{"12\n", "12"},
	{"1\x002", "1"},
}

func TestRubyToI(t *testing.T) {
	for _, tt := range rubyToI {
		if got := RubyToI(tt.in); got != tt.want {
			t.Errorf("RubyToI(%q) = %s, Ruby says %s", tt.in, got, tt.want)
		}
	}
}

// TestRubyToIMatchesRuby asks the installed Ruby about every string of up
// to five characters from an alphabet of what matters to to_i.
func TestRubyToIMatchesRuby(t *testing.T) {
	alphabet := []string{"0", "1", "_", "d", "+", "-", " ", "\t", "x", "D"}
	inputs := []string{""}
	for _, tt := range rubyToI {
		inputs = append(inputs, tt.in)
	}
	level := []string{""}
	for range 5 {
		var next []string
		for _, p := range level {
			for _, c := range alphabet {
				next = append(next, p+c)
			}
		}
		inputs = append(inputs, next...)
		level = next
	}
	var answers []string
	runRuby(t, "", `puts JSON.generate(JSON.parse($stdin.read).map { |s| s.to_i.to_s })`, inputs, &answers)
	if len(answers) != len(inputs) {
		t.Fatalf("%d answers for %d inputs", len(answers), len(inputs))
	}
	failures := 0
	for i, in := range inputs {
		if got := RubyToI(in); got != answers[i] {
			t.Errorf("RubyToI(%q) = %s, Ruby says %s", in, got, answers[i])
			if failures++; failures > 20 {
				t.Fatal("too many differences")
			}
		}
	}
}

// rubyToIModel is to_i written another way, as a regular expression, for
// the fuzz target.
var rubyToIModel = regexp.MustCompile(`\A[ \t\n\v\f\r]*([+-]?)(?:0[dD])?([0-9]+(?:_[0-9]+)*)`)

func FuzzRubyToI(f *testing.F) {
	for _, tt := range rubyToI {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := RubyToI(s)
		want := "0"
		if m := rubyToIModel.FindStringSubmatch(s); m != nil {
			if digits := strings.TrimLeft(strings.ReplaceAll(m[2], "_", ""), "0"); digits != "" {
				want = strings.TrimPrefix(m[1], "+") + digits
			}
		}
		if got != want {
			t.Fatalf("RubyToI(%q) = %s, the model says %s", s, got, want)
		}
	})
}

func TestCompareIntegers(t *testing.T) {
	ordered := []string{"-100", "-20", "-3", "0", "1", "9", "10", "20240101000000", "99999999999999999999"}
	for i, a := range ordered {
		for j, b := range ordered {
			got := compareIntegers(a, b)
			if (i < j) != (got < 0) || (i == j) != (got == 0) {
				t.Errorf("compareIntegers(%s, %s) = %d", a, b, got)
			}
		}
	}
}

func TestCamelize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"create_users", "CreateUsers"},
		{"add_x_to_y", "AddXToY"},
		{"a__b", "AB"},
		{"a_b", "AB"},
		{"_a", "A"},
		{"a_", "A"},
		{"1a_2b", "1a2b"},
		{"", ""},
		{"__", ""},
		{"add_index_to_users_email", "AddIndexToUsersEmail"},
	} {
		if got := camelize(tt.in); got != tt.want {
			t.Errorf("camelize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCamelizeMatchesActiveSupport compares camelize with ActiveSupport's,
// without and with an acronym: names whose camelized forms differ under
// some acronym set must still differ in lower case (the conservative
// duplicate rule of readMigrations).
func TestCamelizeMatchesActiveSupport(t *testing.T) {
	alphabet := []string{"a", "p", "i", "1", "_"}
	inputs := []string{"create_users", "api_thing", "a_p_i_thing", "apithing"}
	level := []string{""}
	for range 4 {
		var next []string
		for _, p := range level {
			for _, c := range alphabet {
				next = append(next, p+c)
			}
		}
		inputs = append(inputs, next...)
		level = next
	}
	var answers struct{ Plain, Acronym []string }
	runRuby(t, "", `
require "active_support"
require "active_support/core_ext/string/inflections"
names = JSON.parse($stdin.read)
plain = names.map(&:camelize)
ActiveSupport::Inflector.inflections(:en) { |i| i.acronym "API"; i.acronym "PI"; i.acronym "A1" }
puts JSON.generate("Plain" => plain, "Acronym" => names.map(&:camelize))`, inputs, &answers)
	for i, in := range inputs {
		if got := camelize(in); got != answers.Plain[i] {
			t.Errorf("camelize(%q) = %q, ActiveSupport says %q", in, got, answers.Plain[i])
		}
		if !strings.EqualFold(answers.Acronym[i], answers.Plain[i]) {
			t.Errorf("%q camelizes to %q with acronyms, %q without: not equal in lower case", in, answers.Acronym[i], answers.Plain[i])
		}
	}
}
