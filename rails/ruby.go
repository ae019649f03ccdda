package rails

import "strings"

// This file holds the few pieces of Ruby and ActiveSupport that decide
// what Rails counts as a migration and how it compares versions and names.

// RubyToI reads s as Ruby's String#to_i does (base 10, no error: what does
// not parse is 0) and writes the integer in canonical decimal: no leading
// zeros, "-" for negatives, "0" for zero. Rails compares schema_migrations'
// version column with the migration files' versions through to_i
// (Migrator#load_migrated: `all_versions.map(&:to_i)`; 7.1+:
// `integer_versions`), so two spellings are the same version exactly when
// their RubyToI are equal.
//
// What Ruby 3.1 does, checked with `ruby -e 'p "…".to_i'` (see
// TestRubyToI): leading white space (space, \t, \n, \v, \f, \r, nothing
// else) is skipped; one sign; a "0d" or "0D" prefix right after the sign;
// then digits, a single underscore allowed between two digits ("1_2" is
// 12, "1__2" is 1, "_12" is 0, "0d_12" is 0); anything else ends the number.
// Integers are unbounded, as Ruby's.
func RubyToI(s string) string {
	i := 0
	for i < len(s) && isRubySpace(s[i]) {
		i++
	}
	negative := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		negative = s[i] == '-'
		i++
	}
	if i+1 < len(s) && s[i] == '0' && (s[i+1] == 'd' || s[i+1] == 'D') {
		i += 2
	}
	var digits strings.Builder
	for i < len(s) {
		c := s[i]
		switch {
		case isDigit(c):
			digits.WriteByte(c)
			i++
			continue
		case c == '_' && digits.Len() > 0 && i+1 < len(s) && isDigit(s[i+1]):
			i++
			continue
		}
		break
	}
	v := strings.TrimLeft(digits.String(), "0")
	if v == "" {
		return "0"
	}
	if negative {
		return "-" + v
	}
	return v
}

// isRubySpace is C's isspace in the C locale, which Ruby's to_i skips.
func isRubySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// compareIntegers orders canonical decimals as RubyToI writes them.
func compareIntegers(a, b string) int {
	an, bn := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	switch {
	case an && !bn:
		return -1
	case !an && bn:
		return 1
	case an && bn:
		return compareIntegers(b[1:], a[1:])
	}
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// camelize is ActiveSupport's String#camelize for the names a migration
// file can carry ([_a-z0-9]*, MigrationFilenameRegexp's second group),
// with no inflection acronyms defined: the leading run of letters and
// digits capitalized, then every "_" dropped and the run after it
// capitalized. So "add_x" is "AddX", "a__b" and "a_b" are both "AB", "_a"
// is "A". (activesupport/lib/active_support/inflector/methods.rb,
// camelize, 6.1 to 8.0: `string.sub(/^[a-z\d]*/) { acronyms[match] ||
// match.capitalize }` then `gsub!(/(?:_|(\/))([a-z\d]*)/i) { acronyms[$2]
// || $2.capitalize }`.)
func camelize(name string) string {
	var b strings.Builder
	for i, seg := range strings.Split(name, "_") {
		if i == 0 || seg != "" {
			b.WriteString(capitalize(seg))
		}
	}
	return b.String()
}

// capitalize is Ruby's String#capitalize for [a-z0-9]*: the first
// character upper-cased, the rest lower-cased.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + strings.ToLower(s[1:])
}
