package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	op, args string
	stage    int // index of the FROM it follows
}

func readDockerfile(t *testing.T, file string) []instruction {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage := -1
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		op, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		op = strings.ToUpper(op)
		if op == "FROM" {
			stage++
		}
		out = append(out, instruction{op: op, args: strings.Join(strings.Fields(args), " "), stage: stage})
	}
	return out
}

var makeAssign = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|::=|\?=|=)\s*(.*)$`)

// makeVariables returns the Makefile's variable assignments, unexpanded.
func makeVariables(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := makeAssign.FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

// makeRecipe returns the recipe of target in the Makefile, with $(VAR)
// references expanded from the Makefile's assignments and overrides (as
// given on make's command line).
func makeRecipe(t *testing.T, file, target string, overrides map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	vars := makeVariables(t, file)
	var recipe []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if in {
			if strings.HasPrefix(line, "\t") {
				recipe = append(recipe, strings.TrimSpace(line))
				continue
			}
			in = false
		}
		if makeAssign.MatchString(line) {
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == target {
			in = true
		}
	}
	if len(recipe) == 0 {
		t.Fatalf("%s: no recipe for target %q", file, target)
	}
	for k, v := range overrides {
		vars[k] = v
	}
	ref := regexp.MustCompile(`\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]`)
	out := strings.Join(recipe, "\n")
	for range 10 { // variables may refer to variables
		out = ref.ReplaceAllStringFunc(out, func(s string) string {
			if v, ok := vars[ref.FindStringSubmatch(s)[1]]; ok {
				return v
			}
			return s
		})
	}
	return out
}

// TestImageBuildsLikeMake: the image is built by `make build`, whose
// recipe makes a static, trimmed, version-stamped binary; the image runs it
// as non-root from a distroless base. It builds for several platforms the
// way BuildKit makes cheap: the build stage runs on the builder's own
// platform and cross-compiles for the target's, and the final stage (the
// target's platform) runs nothing, so no emulation is needed.
func TestImageBuildsLikeMake(t *testing.T) {
	ins := readDockerfile(t, "../Dockerfile")
	var froms []instruction
	for _, in := range ins {
		if in.op == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}

	// The builder's Go is the one go.mod asks for.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	builder := regexp.MustCompile(`^--platform=(\S+) golang:(\d+\.\d+)[-.\w]* AS (\w+)$`).FindStringSubmatch(froms[0].args)
	switch {
	case goVersion == nil:
		t.Fatal("../go.mod has no go directive")
	case builder == nil:
		t.Fatalf("first stage %q: want --platform=$BUILDPLATFORM golang:<version>... AS <name>", froms[0].args)
	case builder[1] != "$BUILDPLATFORM" && builder[1] != "${BUILDPLATFORM}":
		t.Errorf("the build stage runs on --platform=%s, want $BUILDPLATFORM (cross-compiling, no emulation)", builder[1])
	case builder[2] != string(goVersion[1]):
		t.Errorf("the builder is Go %s, go.mod says %s", builder[2], goVersion[1])
	}
	builderStage := builder[3]

	// Modules are downloaded in a layer of their own, before the source.
	order := []string{"COPY go.mod go.sum ./", "RUN go mod download", "COPY . ."}
	at := 0
	for _, in := range ins {
		if at < len(order) && in.stage == 0 && in.op+" "+in.args == order[at] {
			at++
		}
	}
	if at < len(order) {
		t.Errorf("the build stage lacks %q in this order: %q", order[at], order)
	}

	var bin, makeArgs string
	declared := map[string]bool{} // ARGs of the build stage before make build
	makeBuild := regexp.MustCompile(`^make build( .*)? BIN=(\S+)`)
	for _, in := range ins {
		switch {
		case in.stage != 0:
		case in.op == "ARG" && bin == "":
			for _, a := range strings.Fields(in.args) {
				name, _, _ := strings.Cut(a, "=")
				declared[name] = true
			}
		case in.op == "RUN":
			if m := makeBuild.FindStringSubmatch(in.args); m != nil {
				bin, makeArgs = m[2], m[1]
			}
		}
	}
	if bin == "" {
		t.Fatal("the build stage does not run `make build ... BIN=<path>`: the image and `make build` could drift")
	}
	// BuildKit sets TARGETOS and TARGETARCH per platform, for a stage that
	// declares them; make build passes them on to go build.
	for _, v := range []string{"TARGETOS", "TARGETARCH"} {
		if !declared[v] {
			t.Errorf("the build stage does not declare ARG %s before make build", v)
		}
	}
	for _, want := range []string{"GOOS=${TARGETOS}", "GOARCH=${TARGETARCH}", "VERSION=${VERSION}"} {
		if !strings.Contains(makeArgs, want) {
			t.Errorf("the build stage runs `make build%s BIN=%s`, without %s", makeArgs, bin, want)
		}
	}

	recipe := makeRecipe(t, "../Makefile", "build", map[string]string{"BIN": bin, "VERSION": "test-version", "GOOS": "linux", "GOARCH": "arm64"})
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64", "go build", "-trimpath", "-X main.version=test-version", "-o " + bin, "./cmd/migrun"} {
		if !strings.Contains(recipe, want) {
			t.Errorf("make build's recipe, expanded, lacks %q:\n%s", want, recipe)
		}
	}
	if !readMigrunConfig(t).hasVersionVar {
		t.Error("cmd/migrun has no package-level `version` for -X main.version to set")
	}

	last := froms[len(froms)-1].stage
	final := map[string][]string{}
	for _, in := range ins {
		if in.stage == last {
			final[in.op] = append(final[in.op], in.args)
		}
	}
	if strings.HasPrefix(final["FROM"][0], "--platform") {
		t.Errorf("the final stage is FROM %s: it must be the target platform's, not a fixed one", final["FROM"][0])
	}
	if len(final["RUN"]) > 0 {
		t.Errorf("the final stage RUNs %q: a multi-platform build would need emulation (QEMU) for it", final["RUN"])
	}
	checks := []struct{ op, pattern, why string }{
		{"FROM", `^gcr\.io/distroless/static-debian\d+:nonroot$`, "a static distroless base (CA certificates for Slack, no shell)"},
		{"COPY", `^--from=` + regexp.QuoteMeta(builderStage) + ` ` + regexp.QuoteMeta(bin) + ` /migrun$`, "the binary make build wrote"},
		{"USER", `^(nonroot(:nonroot)?|65532(:65532)?)$`, "non-root"},
		{"ENTRYPOINT", `^\["/migrun"\]$`, "the README's COPY --from and the Job examples rely on /migrun"},
		{"LABEL", `org\.opencontainers\.image\.source=`, "OCI labels"},
	}
	for _, c := range checks {
		found := false
		for _, args := range final[c.op] {
			found = found || regexp.MustCompile(c.pattern).MatchString(args)
		}
		if !found {
			t.Errorf("the final stage has no %s matching %s (%s); it has %q", c.op, c.pattern, c.why, final[c.op])
		}
	}
}

// TestDockerignore: the context leaves out .git and build output but
// keeps what `make build` needs.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(line, "/"))
		}
	}
	// Like Docker: a pattern excludes a path it matches or a directory above it.
	excluded := func(p string) bool {
		ex := false
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			pat = strings.TrimPrefix(pat, "!")
			for dir := p; dir != "."; dir = filepath.Dir(dir) {
				if ok, _ := filepath.Match(pat, dir); ok {
					ex = !neg
					break
				}
			}
		}
		return ex
	}
	for _, p := range []string{"go.mod", "go.sum", "Makefile", "cmd/migrun/main.go", "dburl/dburl.go", "internal/dbconn/dbconn.go"} {
		if excluded(p) {
			t.Errorf(".dockerignore excludes %s, which `make build` needs", p)
		}
	}
	for _, p := range []string{".git/HEAD", "bin/migrun", "deploy/go.mod", "integration/testdata/railsapp/Gemfile"} {
		if !excluded(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
}

func TestMakeRecipe(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "Makefile")
	makefile := "VERSION ?= $(shell git describe)\nFLAGS := -trimpath -ldflags \"-X main.version=$(VERSION)\"\nBIN ?= bin/x\n\n.PHONY: build\nbuild: deps\n\tCGO_ENABLED=0 go build $(FLAGS) \\\n\t  -o ${BIN} ./cmd/x\n\ttouch done\n\ntest:\n\tgo test ./...\n"
	if err := os.WriteFile(file, []byte(makefile), 0o644); err != nil {
		t.Fatal(err)
	}
	got := makeRecipe(t, file, "build", map[string]string{"BIN": "/out/x", "VERSION": "v1"})
	want := "CGO_ENABLED=0 go build -trimpath -ldflags \"-X main.version=v1\" \\\n-o /out/x ./cmd/x\ntouch done"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
