package rails

import (
	"fmt"
	"strings"
)

// databaseYML is what a line-based reading of config/database.yml tells
// about one environment. Rails reads the file as ERB, then YAML; migrun
// reads the text, understands block mappings, anchors, aliases and merge
// keys, and reports what it cannot follow instead of guessing.
type databaseYML struct {
	// Doubts say why the environment's databases cannot be known from
	// the text (ERB control flow, YAML migrun does not follow).
	Doubts []string
	// ThreeTier: the environment's value is a mapping of mappings, one
	// per database (DatabaseConfigurations#build_configs: `config.all? {
	// |_, v| v.is_a?(Hash) }`).
	ThreeTier bool
	Databases []ymlDatabase // in three-tier form; nil otherwise
	// Mentions of settings that move migrations or schema_migrations,
	// anywhere in the file (anchors share keys between environments).
	MigrationsPaths []string // "config/database.yml:12"
	SchemaSearch    []string // schema_search_path, schema_order
	SearchPathVar   []string // a search_path key (under variables:), which Rails SETs after schema_search_path
}

type ymlDatabase struct {
	Name          string
	Replica       bool // replica: true: never checked
	DatabaseTasks bool // database_tasks (default true): false hides it from Rails 7.0+ tasks
	Line          int
}

// ymlNode is a block-mapping entry.
type ymlNode struct {
	key      string
	value    string // the scalar after "key:", without anchor; "" for none
	anchor   string
	alias    string   // value "*name"
	merges   []string // "<<: *a" or "<<: [*a, *b]" in its children, in order
	children []*ymlNode
	flow     bool // value is a flow collection ({...} or [...])
	line     int
	indent   int
}

var (
	ymlKeyLine = lazy(`^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#\-?:&*!|>%@` + "`" + `{}\[\],][^#]*?|<<)\s*:(?:\s+(.*))?$`)
	ymlAnchor  = lazy(`^&([^\s]+)\s*(.*)$`)
	ymlAlias   = lazy(`^\*([^\s,\]]+)\s*$`)
	erbTag     = lazy(`<%(.*?)%>`)
)

// parseDatabaseYML reads text (config/database.yml) for environment env.
func parseDatabaseYML(file, text, env string) databaseYML {
	var y databaseYML
	root := &ymlNode{indent: -1}
	stack := []*ymlNode{root}
	anchors := map[string]*ymlNode{}
	blockIndent := -1 // inside a block scalar (| or >) started at this indent
	lines := strings.Split(text, "\n")
	for i, raw := range lines {
		n := i + 1
		where := fmt.Sprintf("%s:%d", file, n)
		line := strings.TrimRight(raw, "\r")
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if blockIndent >= 0 {
			if trimmed == "" || indent > blockIndent {
				continue
			}
			blockIndent = -1
		}
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || trimmed == "---" || trimmed == "..." {
			continue
		}
		y.noteMentions(where, line)
		if strings.HasPrefix(trimmed, "\t") {
			y.Doubts = append(y.Doubts, where+": a tab in the indentation")
			continue
		}
		// ERB: output tags stand for some scalar; anything else (if,
		// each, a tag spanning lines) can change the structure.
		if strings.Contains(line, "<%") {
			for _, m := range erbTag.re().FindAllStringSubmatch(line, -1) {
				if !strings.HasPrefix(m[1], "=") && !strings.HasPrefix(m[1], "#") {
					y.Doubts = append(y.Doubts, where+": ERB control flow (<%"+m[1]+"%>) can change which databases Rails sees")
				}
			}
			line = erbTag.re().ReplaceAllString(line, "ERB")
			if strings.Contains(line, "<%") {
				y.Doubts = append(y.Doubts, where+": an ERB tag that spans lines")
				continue
			}
			trimmed = strings.TrimLeft(line, " ")
			if strings.HasPrefix(trimmed, "ERB") && !ymlKeyLine.re().MatchString(trimmed) {
				y.Doubts = append(y.Doubts, where+": ERB output where YAML expects a key")
				continue
			}
		}
		if strings.HasPrefix(trimmed, "- ") || trimmed == "-" {
			if indent == 0 {
				y.Doubts = append(y.Doubts, where+": a top-level sequence")
			}
			continue // a sequence's items are values: migrun needs only the keys
		}
		m := ymlKeyLine.re().FindStringSubmatch(trimmed)
		if m == nil {
			y.Doubts = append(y.Doubts, where+": YAML migrun does not follow")
			continue
		}
		for len(stack) > 1 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		parent := stack[len(stack)-1]
		node := &ymlNode{key: unquoteYAML(m[1]), line: n, indent: indent}
		value := stripYAMLComment(strings.TrimSpace(m[2]))
		if a := ymlAnchor.re().FindStringSubmatch(value); a != nil {
			node.anchor, value = a[1], strings.TrimSpace(a[2])
			anchors[node.anchor] = node
		}
		switch {
		case node.key == "<<":
			names, ok := mergeAliases(value)
			if !ok {
				y.Doubts = append(y.Doubts, where+": a merge key (<<) migrun does not follow")
				continue
			}
			parent.merges = append(parent.merges, names...)
			continue
		case ymlAlias.re().MatchString(value):
			node.alias = ymlAlias.re().FindStringSubmatch(value)[1]
		case strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">"):
			blockIndent = indent
			node.value = value
		case strings.HasPrefix(value, "{") || strings.HasPrefix(value, "["):
			node.flow = true
			node.value = value
		default:
			node.value = value
		}
		parent.children = append(parent.children, node)
		stack = append(stack, node)
	}
	y.readEnvironment(file, root, anchors, env)
	return y
}

// noteMentions records the settings that move migrations or
// schema_migrations wherever they appear.
func (y *databaseYML) noteMentions(where, line string) {
	if strings.Contains(line, "migrations_paths") {
		y.MigrationsPaths = append(y.MigrationsPaths, where)
	}
	if strings.Contains(line, "schema_search_path") || strings.Contains(line, "schema_order") {
		y.SchemaSearch = append(y.SchemaSearch, where)
	}
	if strings.Contains(strings.ReplaceAll(line, "schema_search_path", ""), "search_path") {
		y.SearchPathVar = append(y.SearchPathVar, where)
	}
}

// readEnvironment finds env's databases.
func (y *databaseYML) readEnvironment(file string, root *ymlNode, anchors map[string]*ymlNode, env string) {
	if len(y.Doubts) > 0 {
		return
	}
	var envNode *ymlNode
	for _, c := range root.children {
		if c.key == env {
			envNode = c // the last one wins, as in Psych
		}
	}
	if envNode == nil {
		return // DATABASE_URL alone: one database, primary
	}
	entries, ok := y.mapping(file, envNode, anchors, 0)
	if !ok || len(entries) == 0 {
		return
	}
	settings := make([][]*ymlNode, len(entries))
	for i, e := range entries {
		var isMap bool
		if settings[i], isMap = y.mapping(file, e, anchors, 0); !isMap {
			return // two-tier: some value is not a mapping
		}
	}
	y.ThreeTier = true
	for i, e := range entries {
		db := ymlDatabase{Name: e.key, DatabaseTasks: true, Line: e.line}
		for _, k := range settings[i] {
			switch k.key {
			case "replica":
				db.Replica = yamlTruthy(k.value)
			case "database_tasks":
				db.DatabaseTasks = yamlTruthy(k.value)
			default:
				continue
			}
			if strings.Contains(k.value, "ERB") || k.alias != "" || k.flow {
				y.Doubts = append(y.Doubts, fmt.Sprintf("%s:%d: %s is not a plain value", file, k.line, k.key))
			}
		}
		y.Databases = append(y.Databases, db)
	}
}

// mapping returns a node's entries when its value is a mapping (its own
// children, then what its merge keys bring that it does not set), and
// whether it is one.
func (y *databaseYML) mapping(file string, n *ymlNode, anchors map[string]*ymlNode, depth int) ([]*ymlNode, bool) {
	if depth > 20 {
		y.Doubts = append(y.Doubts, fmt.Sprintf("%s:%d: aliases nested too deep", file, n.line))
		return nil, false
	}
	if n.alias != "" {
		target, ok := anchors[n.alias]
		if !ok {
			y.Doubts = append(y.Doubts, fmt.Sprintf("%s:%d: unknown alias *%s", file, n.line, n.alias))
			return nil, false
		}
		return y.mapping(file, target, anchors, depth+1)
	}
	if n.flow {
		if strings.HasPrefix(n.value, "{") {
			y.Doubts = append(y.Doubts, fmt.Sprintf("%s:%d: a flow mapping ({...}) migrun does not follow", file, n.line))
		}
		return nil, false
	}
	if n.value != "" || (len(n.children) == 0 && len(n.merges) == 0) {
		return nil, false
	}
	// As Psych builds the hash for the usual layout, merge keys first:
	// what they bring, each replaced by the node's own setting of that
	// key, then the node's other keys.
	own := map[string]*ymlNode{}
	for _, c := range n.children {
		own[c.key] = c
	}
	var entries []*ymlNode
	have := map[string]bool{}
	for _, name := range n.merges {
		target, ok := anchors[name]
		if !ok {
			y.Doubts = append(y.Doubts, fmt.Sprintf("%s:%d: unknown alias *%s", file, n.line, name))
			return nil, false
		}
		merged, ok := y.mapping(file, target, anchors, depth+1)
		if !ok {
			y.Doubts = append(y.Doubts, fmt.Sprintf("%s:%d: <<: *%s is not a mapping", file, n.line, name))
			return nil, false
		}
		for _, c := range merged {
			if have[c.key] {
				continue
			}
			have[c.key] = true
			if o, ok := own[c.key]; ok {
				c = o
			}
			entries = append(entries, c)
		}
	}
	for _, c := range n.children {
		if !have[c.key] && own[c.key] == c { // a repeated key: the last one wins
			have[c.key] = true
			entries = append(entries, c)
		}
	}
	return entries, true
}

// mergeAliases reads a merge key's value: *a, or [*a, *b].
func mergeAliases(value string) ([]string, bool) {
	if m := ymlAlias.re().FindStringSubmatch(value); m != nil {
		return []string{m[1]}, true
	}
	inner, ok := strings.CutPrefix(value, "[")
	if !ok {
		return nil, false
	}
	inner, ok = strings.CutSuffix(inner, "]")
	if !ok {
		return nil, false
	}
	var names []string
	for part := range strings.SplitSeq(inner, ",") {
		m := ymlAlias.re().FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			return nil, false
		}
		names = append(names, m[1])
	}
	return names, len(names) > 0
}

// yamlTruthy is Ruby's truthiness of a plain scalar as Psych loads it
// (Psych::ScalarScanner#tokenize): /^(no|false|off)$/i is false,
// /^(null|Null|NULL|~)$/ and nothing are nil; a quoted scalar is a string.
func yamlTruthy(v string) bool {
	switch v {
	case "", "~", "null", "Null", "NULL":
		return false
	}
	switch strings.ToLower(v) {
	case "false", "no", "off":
		return false
	}
	return true
}

func unquoteYAML(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// stripYAMLComment drops a " #..." comment after a plain value.
func stripYAMLComment(v string) string {
	if strings.HasPrefix(v, "\"") || strings.HasPrefix(v, "'") {
		return v
	}
	if i := strings.Index(v, " #"); i >= 0 {
		return strings.TrimSpace(v[:i])
	}
	if strings.HasPrefix(v, "#") {
		return ""
	}
	return v
}
