package redact

import "strings"

// SQLLiterals masks the string literals in q, a statement of another
// session that migrun shows (who holds the lock, who blocks the
// migration): its text can carry secrets migrun does not know, such as
// ALTER ROLE ... PASSWORD '...' or UPDATE ... SET token = '...'. Each
// quoted literal (a doubled quote stays inside), E-string (a backslashed
// quote too) and $tag$...$tag$ becomes '?'; a literal cut off by
// truncation is masked to the end. MySQL's "..." strings are masked too;
// PostgreSQL's "..." identifiers are kept.
func SQLLiterals(q string, mysql bool) string {
	var b strings.Builder
	mask := func() {
		if strings.HasSuffix(b.String(), "'") {
			b.WriteByte(' ') // '?''?' would read as one literal
		}
		b.WriteString("'?'")
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			backslash := mysql || (i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i < 2 || !isWord(q[i-2])))
			i = skipQuoted(q, i, '\'', backslash)
			mask()
		case c == '"' && mysql:
			i = skipQuoted(q, i, '"', true)
			mask()
		case c == '$' && !mysql && (i == 0 || !isWord(q[i-1])):
			tag, ok := dollarTag(q[i:])
			if !ok {
				b.WriteByte(c)
				i++
				continue
			}
			end := strings.Index(q[i+len(tag):], tag)
			if end < 0 {
				i = len(q)
			} else {
				i += len(tag) + end + len(tag)
			}
			mask()
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipQuoted returns the index after the literal opening at q[i], quoted
// by quote, where a doubled quote (and, with backslash, \x) stays inside.
func skipQuoted(q string, i int, quote byte, backslash bool) int {
	for j := i + 1; j < len(q); j++ {
		switch {
		case backslash && q[j] == '\\':
			j++
		case q[j] == quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// dollarTag is the $tag$ that opens a dollar-quoted string at the start
// of s, if one does.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		switch {
		case s[j] == '$':
			return s[:j+1], true
		case !isWord(s[j]) || (j == 1 && s[j] >= '0' && s[j] <= '9'):
			return "", false // $1, a parameter; or not a tag
		}
	}
	return "", false
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
