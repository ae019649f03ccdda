package rails

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var databaseYMLs = []struct {
	name      string
	text      string
	threeTier bool
	databases []string // name, "(replica)", "(no tasks)"
	doubt     string   // a substring of the first doubt; "" for none
	paths     int      // lines mentioning migrations_paths
	search    int      // lines mentioning schema_search_path or schema_order
	searchVar int      // lines mentioning a search_path variable
}{
	{
		name: "the test app's: two-tier, anchors, ERB output",
		text: `# comment
default: &default
  pool: <%= ENV.fetch("RAILS_MAX_THREADS") { 5 } %>
  adapter: postgresql

development:
  <<: *default

production:
  <<: *default
  url: <%= ENV["DATABASE_URL"] %>
`,
	},
	{
		name: "three-tier, merge keys, replica, database_tasks: false",
		text: `---
default: &default
  adapter: postgresql
  pool: 5

production:
  primary:
    <<: *default
    database: app
    # schema_search_path: commented out
  primary_replica:
    <<: *default
    database: app
    replica: true
  animals:
    <<: *default
    database: animals
    migrations_paths: db/animals_migrate
  cache:
    <<: *default
    database_tasks: false
  "queue":
    <<: *default
    replica: "true"
    database_tasks: no
`,
		threeTier: true,
		databases: []string{"primary", "primary_replica (replica)", "animals", "cache (no tasks)", "queue (replica) (no tasks)"},
		paths:     1,
	},
	{
		name: "three-tier through an alias",
		text: `shared: &shared
  primary:
    database: a
  animals:
    database: b
    migrations_paths:
      - db/animals
      - db/more

production: *shared
`,
		threeTier: true,
		databases: []string{"primary", "animals"},
		paths:     1,
	},
	{
		name: "three-tier through a merge key, and a merge list",
		text: `a: &a
  adapter: mysql2
b: &b
  host: x
multi: &multi
  primary:
    <<: [*a, *b]
    database: a
  other:
    <<: *a
    database: o
production:
  <<: *multi
  extra:
    database: e
`,
		threeTier: true,
		databases: []string{"primary", "other", "extra"},
	},
	{
		name: "two-tier with a variables mapping",
		text: `production:
  adapter: postgresql
  schema_search_path: "app,public"
  variables:
    statement_timeout: 5000
    search_path: app
`,
		search:    1,
		searchVar: 1,
	},
	{
		name: "only mappings: Rails reads a database named variables",
		text: `production:
  variables:
    statement_timeout: 5000
`,
		threeTier: true,
		databases: []string{"variables"},
	},
	{
		name: "no section for the environment",
		text: `development:
  adapter: sqlite3
  schema_order: a
`,
		search: 1,
	},
	{
		name: "a block scalar and trailing comments",
		text: `production:
  primary:
    database: app # the app
    description: |
      not: a key
      neither: this
  secondary:
    database: other
`,
		threeTier: true,
		databases: []string{"primary", "secondary"},
	},
	{
		name: "ERB control flow",
		text: `production:
  primary:
    database: app
<% if ENV["ANALYTICS"] %>
  analytics:
    database: analytics
<% end %>
`,
		doubt: "database.yml:4: ERB control flow",
	},
	{
		name: "ERB output where a key belongs",
		text: `production:
  <%= ENV["MORE_DATABASES"] %>
`,
		doubt: "ERB output where YAML expects a key",
	},
	{
		name:  "a flow mapping",
		text:  "production: {primary: {database: a}, animals: {database: b}}\n",
		doubt: "flow mapping",
	},
	{
		name:  "an unknown alias",
		text:  "production:\n  <<: *nowhere\n",
		doubt: "unknown alias *nowhere",
	},
	{
		name: "an ERB replica flag",
		text: `production:
  primary:
    database: a
  reader:
    database: a
    replica: <%= ENV["REPLICA"] %>
`,
		threeTier: true,
		databases: []string{"primary", "reader (replica)"},
		doubt:     "replica is not a plain value",
	},
}

func describe(dbs []ymlDatabase) []string {
	var out []string
	for _, db := range dbs {
		s := db.Name
		if db.Replica {
			s += " (replica)"
		}
		if !db.DatabaseTasks {
			s += " (no tasks)"
		}
		out = append(out, s)
	}
	return out
}

func TestParseDatabaseYML(t *testing.T) {
	for _, tt := range databaseYMLs {
		t.Run(tt.name, func(t *testing.T) {
			y := parseDatabaseYML("config/database.yml", tt.text, "production")
			if tt.doubt != "" {
				if len(y.Doubts) == 0 || !strings.Contains(y.Doubts[0], tt.doubt) {
					t.Errorf("doubts = %q, want %q first", y.Doubts, tt.doubt)
				}
			} else if len(y.Doubts) > 0 {
				t.Fatalf("doubts: %q", y.Doubts)
			}
			if tt.doubt == "" || tt.databases != nil {
				if y.ThreeTier != tt.threeTier || !reflect.DeepEqual(describe(y.Databases), tt.databases) {
					t.Errorf("three-tier %v %q, want %v %q", y.ThreeTier, describe(y.Databases), tt.threeTier, tt.databases)
				}
			}
			if len(y.MigrationsPaths) != tt.paths || len(y.SchemaSearch) != tt.search || len(y.SearchPathVar) != tt.searchVar {
				t.Errorf("mentions: paths %q, search %q, variable %q", y.MigrationsPaths, y.SchemaSearch, y.SearchPathVar)
			}
		})
	}
}

// TestDatabaseYMLMatchesRails loads each file migrun follows as Rails
// does (ERB, then YAML with aliases) and compares the environment's
// databases: DatabaseConfigurations#build_configs' three-tier rule,
// replica and database_tasks as HashConfig reads them.
func TestDatabaseYMLMatchesRails(t *testing.T) {
	var texts []string
	var cases []int
	for i, tt := range databaseYMLs {
		if tt.doubt == "" {
			texts = append(texts, tt.text)
			cases = append(cases, i)
		}
	}
	var answers []struct {
		ThreeTier bool
		Databases []string
	}
	runRuby(t, "", `
require "erb"
require "yaml"
puts JSON.generate(JSON.parse($stdin.read).map { |text|
  all = YAML.respond_to?(:unsafe_load) ? YAML.unsafe_load(ERB.new(text).result) : YAML.load(ERB.new(text).result)
  env = all["production"]
  if env.is_a?(Hash) && !env.empty? && env.all? { |_, v| v.is_a?(Hash) }
    dbs = env.map { |name, c|
      s = name.to_s
      s += " (replica)" if c["replica"]
      s += " (no tasks)" unless c.fetch("database_tasks", true)
      s
    }
    { "ThreeTier" => true, "Databases" => dbs }
  else
    { "ThreeTier" => false, "Databases" => nil }
  end
})`, texts, &answers)
	for j, i := range cases {
		tt := databaseYMLs[i]
		y := parseDatabaseYML("config/database.yml", tt.text, "production")
		got := fmt.Sprint(y.ThreeTier, describe(y.Databases))
		want := fmt.Sprint(answers[j].ThreeTier, answers[j].Databases)
		if got != want {
			t.Errorf("%s: migrun reads %s, Rails %s", tt.name, got, want)
		}
	}
}
