package deploy

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// chart is Chart.yaml; decoded strictly, so a misspelt key fails.
type chart struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Type        string   `json:"type,omitempty"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion,omitempty"`
	KubeVersion string   `json:"kubeVersion,omitempty"`
	Keywords    []string `json:"keywords,omitempty"`
	Home        string   `json:"home,omitempty"`
	Sources     []string `json:"sources,omitempty"`
}

// helmFuncs are the few Helm (Sprig) functions the template uses, with
// Helm's semantics. A template calling another fails to parse: add it here.
var helmFuncs = template.FuncMap{
	"quote": func(vs ...any) string {
		var out []string
		for _, v := range vs {
			if v != nil {
				out = append(out, fmt.Sprintf("%q", fmt.Sprint(v)))
			}
		}
		return strings.Join(out, " ")
	},
	"toYaml": func(v any) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	},
	"indent": indent,
	"nindent": func(n int, s string) string {
		return "\n" + indent(n, s)
	},
	"default": func(def any, given ...any) any {
		if len(given) == 0 || given[0] == nil || given[0] == "" {
			return def
		}
		return given[0]
	},
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// renderHelm renders the template as `helm template <release> deploy/helm`
// would with the default values. Missing keys are errors (Helm renders
// them empty, which is never what an example means).
func renderHelm(t *testing.T, release string) []byte {
	t.Helper()
	var c chart
	mustReadYAML(t, "helm/Chart.yaml", &c, true)
	var values map[string]any
	mustReadYAML(t, "helm/values.yaml", &values, false)
	src, err := os.ReadFile("helm/templates/migrate-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("migrate-job.yaml").Funcs(helmFuncs).Option("missingkey=error").Parse(string(src))
	if err != nil {
		t.Fatalf("helm/templates/migrate-job.yaml: %v", err)
	}
	data := map[string]any{
		"Values":  values,
		"Release": map[string]any{"Name": release, "Namespace": "default", "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart":   map[string]any{"Name": c.Name, "Version": c.Version, "AppVersion": c.AppVersion, "Description": c.Description, "Type": c.Type},
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		t.Fatalf("rendering helm/templates/migrate-job.yaml: %v", err)
	}
	return out.Bytes()
}

func mustReadYAML(t *testing.T, file string, v any, strict bool) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strict {
		err = unmarshalStrict(data, v)
	} else {
		err = yaml.Unmarshal(data, v)
	}
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestHelmChart: Chart.yaml is a valid v2 chart, and the committed
// rendering (which the other tests check) is what the template renders to,
// so those checks speak for the chart.
func TestHelmChart(t *testing.T) {
	var c chart
	mustReadYAML(t, "helm/Chart.yaml", &c, true)
	if c.APIVersion != "v2" || c.Name == "" || c.Version == "" {
		t.Errorf("Chart.yaml: want apiVersion v2, a name and a version, got %+v", c)
	}

	const renderedFile = "helm/rendered/migrate-job.yaml"
	committed, err := os.ReadFile(renderedFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^# +helm template (\S+) deploy/helm$`).FindSubmatch(committed)
	if m == nil {
		t.Fatalf("%s: no `# helm template <release> deploy/helm` line naming the release it was rendered for", renderedFile)
	}
	rendered := renderHelm(t, string(m[1]))

	want := decodeJob(t, renderedFile, committed)
	got := decodeJob(t, "the rendered template", rendered)
	if want == nil || got == nil {
		return
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("%s differs from what helm/templates/migrate-job.yaml renders to with helm/values.yaml (update it with `helm template`):\n%s", renderedFile, lineDiff(want, got))
	}
	// The same, said plainly: the variables and command line agree.
	if envNames(got) != envNames(want) || !slices.Equal(commandLine(got), commandLine(want)) {
		t.Errorf("template: env %s, command %q; rendered: env %s, command %q", envNames(got), commandLine(got), envNames(want), commandLine(want))
	}
}

func decodeJob(t *testing.T, what string, data []byte) *batchv1.Job {
	t.Helper()
	objs, errs := decodeManifests(what, data)
	for _, err := range errs {
		t.Error(err)
	}
	if len(objs) != 1 {
		t.Errorf("%s: %d objects, want one Job", what, len(objs))
		return nil
	}
	job, ok := objs[0].obj.(*batchv1.Job)
	if !ok {
		t.Errorf("%s: a %s, want a Job", what, objs[0].kind)
		return nil
	}
	return job
}

func envNames(j *batchv1.Job) string {
	var names []string
	for _, c := range j.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			names = append(names, c.Name+"."+e.Name)
		}
	}
	return strings.Join(names, ",")
}

func commandLine(j *batchv1.Job) []string {
	var line []string
	for _, c := range j.Spec.Template.Spec.Containers {
		line = slices.Concat(line, []string{c.Name + ":"}, c.Command, c.Args)
	}
	return line
}

// lineDiff lists the lines of the two objects' YAML that only one has.
func lineDiff(want, got any) string {
	a, _ := yaml.Marshal(want)
	b, _ := yaml.Marshal(got)
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	return "(- committed, + template)\n" + strings.Join(out, "\n")
}
