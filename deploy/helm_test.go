package deploy

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// helmInstall is how .ci/run installs Helm (the version pinned there too).
const helmInstall = "go install helm.sh/helm/v3/cmd/helm@v3.22.0"

// kubeVersion is the cluster version the tests render the chart for: a
// helm built by `go install` assumes 1.20, below the chart's kubeVersion.
const kubeVersion = "1.31"

var update = flag.Bool("update", false, "rewrite helm/rendered/ with what `helm template` prints")

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

// helmTemplate runs `helm template` from the repository's root, as the
// rendered files' headers and the README write it.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "helm", helmInstall), append([]string{"template"}, args...)...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &helmError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// valuesFiles are the example values files next to the chart's defaults.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("helm/values-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no helm/values-*.yaml: %v", err)
	}
	return files
}

// TestHelmLint: Chart.yaml is a valid v2 chart that states the Kubernetes
// it needs, and `helm lint --strict` passes with the default values and
// with each example values file (values.schema.json refuses unknown keys).
func TestHelmLint(t *testing.T) {
	t.Parallel()
	var c chart
	mustReadStrict(t, "helm/Chart.yaml", &c)
	if c.APIVersion != "v2" || c.Name == "" || c.Version == "" || c.AppVersion == "" {
		t.Errorf("Chart.yaml: want apiVersion v2, a name, a version and an appVersion, got %+v", c)
	}
	if c.KubeVersion != ">=1.26.0-0" {
		t.Errorf("Chart.yaml: kubeVersion %q, want >=1.26.0-0 (podFailurePolicy)", c.KubeVersion)
	}
	helm := tool(t, "helm", helmInstall)
	for _, values := range append([]string{""}, valuesFiles(t)...) {
		args := []string{"lint", "--strict", "--kube-version", kubeVersion, "deploy/helm"}
		if values != "" {
			args = append(args, "-f", "deploy/"+values)
		}
		run(t, "..", helm, args...)
	}
}

// TestHelmRendered: each file in helm/rendered/ is, below its header,
// exactly what the `helm template` command its header names prints, and
// every example values file has one; so the strict checks of
// manifests_test.go, which read rendered/, speak for the chart.
// `go test -run TestHelmRendered -update` rewrites them.
func TestHelmRendered(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("helm/rendered/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no helm/rendered/*.yaml: %v", err)
	}
	command := regexp.MustCompile(`(?m)^#   helm template (rails-app deploy/helm .*)$`)
	rendered := map[string]bool{} // values files rendered
	for _, file := range files {
		committed, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		header, body := splitHeader(committed)
		m := command.FindSubmatch(header)
		if m == nil {
			t.Errorf("%s: its header names no `helm template rails-app deploy/helm ...` command", file)
			continue
		}
		args := strings.Fields(string(m[1]))
		if !slices.Contains(args, "--kube-version") {
			t.Errorf("%s: %q: pass --kube-version, or the output depends on how helm was built", file, m[1])
		}
		for i, a := range args {
			if a == "-f" && i+1 < len(args) {
				rendered[strings.TrimPrefix(args[i+1], "deploy/")] = true
			}
		}
		got, err := helmTemplate(t, args...)
		if err != nil {
			t.Errorf("%s: helm template %s: %v", file, m[1], err)
			continue
		}
		if *update {
			if err := os.WriteFile(file, append(header, got...), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !bytes.Equal(body, got) {
			t.Errorf("%s differs from `helm template %s` (rewrite it: go test -run TestHelmRendered -update):\n%s", file, m[1], textDiff(string(body), string(got)))
		}
	}
	for _, values := range valuesFiles(t) {
		if !rendered[values] {
			t.Errorf("%s: no file in helm/rendered/ renders it, so nothing checks what it makes", values)
		}
	}
}

// splitHeader splits a rendered file into its leading comment lines and
// the rest, which is helm's output.
func splitHeader(data []byte) (header, body []byte) {
	rest := data
	for len(rest) > 0 && rest[0] == '#' {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return data, nil
		}
		rest = rest[i+1:]
	}
	return data[:len(data)-len(rest)], rest
}

// TestHelmRevisionInStep: image.tag alone sets the image, MIGRUN_REVISION
// and the version labels, and without it the chart's appVersion does.
func TestHelmRevisionInStep(t *testing.T) {
	t.Parallel()
	var c chart
	mustReadStrict(t, "helm/Chart.yaml", &c)
	for _, tt := range []struct{ name, want string }{{"", c.AppVersion}, {"20240101", "20240101"}} {
		args := []string{"rails-app", "deploy/helm", "--kube-version", kubeVersion, "-f", "deploy/helm/values-gke-cloudsql.yaml"}
		if tt.name != "" {
			args = append(args, "--set-string", "image.tag="+tt.name)
		}
		out, err := helmTemplate(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		objs, errs := decodeManifests("helm template "+strings.Join(args, " "), out)
		for _, err := range errs {
			t.Error(err)
		}
		checkRevisions(t, objs, tt.want)
	}
}

// TestHelmRefuses: what the chart must refuse to render, with a message
// that says why.
func TestHelmRefuses(t *testing.T) {
	t.Parallel()
	proxy := []string{"--set", "cloudSqlProxy.enabled=true", "--set", "cloudSqlProxy.instance=p:r:i"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"a cluster older than podFailurePolicy", []string{"--kube-version", "1.25"}, "kubeVersion"},
		{"a native sidecar before Kubernetes 1.29", append([]string{"--kube-version", "1.28"}, proxy...), "needs Kubernetes 1.29"},
		{"the proxy without its instance", []string{"--kube-version", kubeVersion, "--set", "cloudSqlProxy.enabled=true"}, "cloudSqlProxy.instance"},
		{"a misspelt value", []string{"--kube-version", kubeVersion, "--set", "migrun.lockTimout=5m"}, "lockTimout"},
		{"a duration that is not one", []string{"--kube-version", kubeVersion, "--set-string", "migrun.ddlLockTimeout=5"}, "ddlLockTimeout"},
	}
	for _, tt := range tests {
		_, err := helmTemplate(t, append([]string{"rails-app", "deploy/helm"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: helm template %s: error %v, want one containing %q", tt.name, strings.Join(tt.args, " "), err, tt.wantErr)
		}
	}
}

// mustReadStrict decodes a YAML file strictly: an unknown key fails.
func mustReadStrict(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// textDiff lists the lines only one of the two texts has.
func textDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for _, l := range wl {
		if !slices.Contains(gl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range gl {
		if !slices.Contains(wl, l) {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 {
		return "(the same lines, in another order or number)"
	}
	return "(- committed, + helm template)\n" + strings.Join(out, "\n")
}
