// Package deploy holds the deployment examples; its tests parse every
// manifest strictly as Kubernetes API objects and check them against
// migrun's own configuration, so the examples cannot rot. It is a module
// of its own, so the Kubernetes API packages stay out of migrun's.
package deploy

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// object is one parsed manifest document.
type object struct {
	file string
	kind string
	obj  any
}

// newObject maps kinds to their typed API objects.
var newObject = map[string]func() any{
	"apps/v1/Deployment": func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":       func() any { return &batchv1.Job{} },
	"v1/Secret":          func() any { return &corev1.Secret{} },
	"v1/ConfigMap":       func() any { return &corev1.ConfigMap{} },
}

// manifests parses every Kubernetes manifest under this directory; helm
// templates are parsed through their rendered copy.
func manifests(t *testing.T) []object {
	t.Helper()
	var objs []object
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		if strings.HasPrefix(path, filepath.Join("helm", "templates")) || strings.HasPrefix(path, "helm/Chart") || path == filepath.Join("helm", "values.yaml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Errorf("%s #%d: %v", path, i, err)
				continue
			}
			key := meta.APIVersion + "/" + meta.Kind
			mk, ok := newObject[key]
			if !ok {
				t.Errorf("%s #%d: unexpected kind %s", path, i, key)
				continue
			}
			obj := mk()
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s #%d: not a valid %s: %v", path, i, key, err)
				continue
			}
			objs = append(objs, object{file: path, kind: meta.Kind, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 4 {
		t.Fatalf("found only %d manifests", len(objs))
	}
	return objs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func podSpec(o object) *corev1.PodSpec {
	switch v := o.obj.(type) {
	case *batchv1.Job:
		return &v.Spec.Template.Spec
	case *appsv1.Deployment:
		return &v.Spec.Template.Spec
	}
	return nil
}

// migrunContainers are the containers that run migrun.
func migrunContainers(spec *corev1.PodSpec) []corev1.Container {
	var out []corev1.Container
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if len(c.Command) > 0 && filepath.Base(c.Command[0]) == "migrun" {
			out = append(out, c)
		}
	}
	return out
}

// migrunNames reads ../cmd/migrun: the variables (env tags and fallbacks),
// the flags (bindFlags) and the subcommands (Main's cases).
type migrunNames struct{ vars, flags, commands map[string]bool }

func readMigrunNames(t *testing.T) migrunNames {
	t.Helper()
	n := migrunNames{vars: map[string]bool{}, flags: map[string]bool{}, commands: map[string]bool{}}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, "../cmd/migrun", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	tag := regexp.MustCompile(`env:"([A-Z0-9_]+)`)
	for _, pkg := range pkgs {
		for _, file := range pkg.Files {
			ast.Inspect(file, func(node ast.Node) bool {
				switch x := node.(type) {
				case *ast.Field:
					if x.Tag != nil {
						if m := tag.FindStringSubmatch(x.Tag.Value); m != nil {
							n.vars[m[1]] = true
						}
					}
				case *ast.ValueSpec:
					if len(x.Names) == 1 && x.Names[0].Name == "fallbacks" {
						ast.Inspect(x, func(node ast.Node) bool {
							if lit, ok := node.(*ast.BasicLit); ok && lit.Kind == token.STRING {
								n.vars[unquote(lit.Value)] = true
							}
							return true
						})
					}
				case *ast.FuncDecl:
					switch x.Name.Name {
					case "bindFlags":
						ast.Inspect(x, func(node ast.Node) bool {
							call, ok := node.(*ast.CallExpr)
							if !ok || len(call.Args) < 2 {
								return true
							}
							if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								n.flags[unquote(lit.Value)] = true
							}
							return true
						})
					case "Main":
						ast.Inspect(x, func(node ast.Node) bool {
							if cc, ok := node.(*ast.CaseClause); ok {
								for _, e := range cc.List {
									if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
										n.commands[unquote(lit.Value)] = true
									}
								}
							}
							return true
						})
					}
				}
				return true
			})
		}
	}
	if len(n.vars) < 10 || len(n.flags) < 10 || !n.commands["run"] {
		t.Fatalf("could not read migrun's configuration: %+v", n)
	}
	return n
}

func unquote(s string) string {
	u, err := strconv.Unquote(s)
	if err != nil {
		return s
	}
	return u
}

// TestManifestsUseRealSettings: every migrun variable, flag and subcommand
// the examples use exists.
func TestManifestsUseRealSettings(t *testing.T) {
	names := readMigrunNames(t)
	used := 0
	for _, o := range manifests(t) {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, c := range migrunContainers(spec) {
			used++
			line := append(append([]string{}, c.Command[1:]...), c.Args...)
			if len(line) == 0 || !names.commands[line[0]] {
				t.Errorf("%s %s: unknown migrun subcommand in %q", o.file, c.Name, line)
			}
			for _, arg := range line[1:] {
				if arg == "--" {
					break
				}
				if strings.HasPrefix(arg, "-") {
					flag, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
					if !names.flags[flag] {
						t.Errorf("%s %s: unknown flag %q", o.file, c.Name, arg)
					}
				}
			}
			for _, e := range c.Env {
				migrunVar := strings.HasPrefix(e.Name, "MIGRUN_") || strings.HasPrefix(e.Name, "SLACK_") || e.Name == "DATABASE_URL" || e.Name == "RAILS_ENV"
				if migrunVar && !names.vars[e.Name] {
					t.Errorf("%s %s: migrun reads no variable %s", o.file, c.Name, e.Name)
				}
			}
		}
	}
	if used < 4 {
		t.Errorf("only %d migrun containers found", used)
	}
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestMigrationJobs: the hook Jobs are set up so a failure stops the deploy.
func TestMigrationJobs(t *testing.T) {
	jobs := 0
	for _, o := range manifests(t) {
		job, ok := o.obj.(*batchv1.Job)
		if !ok {
			continue
		}
		jobs++
		ann := job.Annotations
		switch {
		case strings.HasPrefix(o.file, "argocd"):
			if ann["argocd.argoproj.io/hook"] != "PreSync" || ann["argocd.argoproj.io/hook-delete-policy"] != "BeforeHookCreation" {
				t.Errorf("%s: Argo CD hook annotations %v", o.file, ann)
			}
		case strings.HasPrefix(o.file, "helm"):
			if ann["helm.sh/hook"] != "pre-install,pre-upgrade" || ann["helm.sh/hook-delete-policy"] != "before-hook-creation" || ann["helm.sh/hook-weight"] == "" {
				t.Errorf("%s: Helm hook annotations %v", o.file, ann)
			}
		}
		spec := job.Spec.Template.Spec
		if job.Spec.BackoffLimit == nil || job.Spec.ActiveDeadlineSeconds == nil || spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("%s: backoffLimit, activeDeadlineSeconds and restartPolicy Never are required", o.file)
			continue
		}
		for _, c := range migrunContainers(&spec) {
			lock := durationOr(t, env(c, "MIGRUN_LOCK_TIMEOUT"), 30*time.Minute)
			connect := durationOr(t, env(c, "MIGRUN_CONNECT_TIMEOUT"), time.Minute)
			if deadline := time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second; deadline <= lock+connect {
				t.Errorf("%s: activeDeadlineSeconds %s does not exceed the lock timeout %s + connect timeout %s", o.file, deadline, lock, connect)
			}
			if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
				t.Errorf("%s: terminationMessagePolicy %q", o.file, c.TerminationMessagePolicy)
			}
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: the Pod must run as non-root", o.file)
		}
	}
	if jobs < 3 {
		t.Errorf("only %d Jobs found", jobs)
	}
}

func durationOr(t *testing.T, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf("bad duration %q", s)
	}
	return d
}

// TestInitContainers: every replica's init container posts only changes.
func TestInitContainers(t *testing.T) {
	for _, o := range manifests(t) {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.InitContainers {
			if len(c.Command) > 1 && c.Command[1] == "run" && env(c, "MIGRUN_NOTIFY") != "changes" {
				t.Errorf("%s: an init container migrating in every Pod must set MIGRUN_NOTIFY=changes", o.file)
			}
		}
	}
}

// TestHelmTemplateMatchesRendered: the committed rendering names the same
// variables and command as the template, so the tests speak for the chart.
func TestHelmTemplateMatchesRendered(t *testing.T) {
	names := regexp.MustCompile(`(?m)^\s*- name: ([A-Z_]+)$|command: (.*)$`)
	read := func(path string) []string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range names.FindAllStringSubmatch(string(data), -1) {
			out = append(out, m[1]+m[2])
		}
		return out
	}
	tmpl, rendered := read("helm/templates/migrate-job.yaml"), read("helm/rendered/migrate-job.yaml")
	if !reflect.DeepEqual(tmpl, rendered) {
		t.Errorf("template and rendering differ:\n%v\n%v", tmpl, rendered)
	}
	var chart struct {
		APIVersion  string `json:"apiVersion"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Type        string `json:"type"`
		Version     string `json:"version"`
		AppVersion  string `json:"appVersion"`
	}
	data, err := os.ReadFile("helm/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &chart); err != nil || chart.APIVersion != "v2" {
		t.Errorf("Chart.yaml: %v %+v", err, chart)
	}
	var values map[string]any
	if data, err = os.ReadFile("helm/values.yaml"); err == nil {
		err = yaml.Unmarshal(data, &values)
	}
	if err != nil {
		t.Errorf("values.yaml: %v", err)
	}
}

// TestImageBuildsLikeMake: the Dockerfile builds with `make build`, whose
// recipe makes a static, reproducible binary.
func TestImageBuildsLikeMake(t *testing.T) {
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^RUN make build `).Match(dockerfile) {
		t.Error("the Dockerfile does not build with `make build`")
	}
	for _, want := range []string{"USER nonroot", `ENTRYPOINT ["/migrun"]`} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	recipe := regexp.MustCompile(`(?m)^build:\n\t(.*)$`).FindSubmatch(makefile)
	if recipe == nil {
		t.Fatal("no build target in the Makefile")
	}
	for _, want := range []string{"CGO_ENABLED=0", "$(GOFLAGS_BUILD)", "./cmd/migrun"} {
		if !strings.Contains(string(recipe[1]), want) {
			t.Errorf("make build's recipe %q lacks %s", recipe[1], want)
		}
	}
	if !strings.Contains(string(makefile), "-trimpath") {
		t.Error("the build flags lack -trimpath")
	}
}
