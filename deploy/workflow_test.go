package deploy

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// workflowFile is CI for GitHub; `make check` lints it with actionlint.
const workflowFile = "../.github/workflows/ci.yml"

type workflowStep struct {
	Uses string         `json:"uses"`
	Run  string         `json:"run"`
	With map[string]any `json:"with"`
}

type workflowJob struct {
	If        string         `json:"if"`
	Needs     any            `json:"needs"`
	Container string         `json:"container"`
	Steps     []workflowStep `json:"steps"`
}

// workflow is the part of ci.yml these tests read (actionlint checks the
// rest against GitHub's schema).
type workflow struct {
	Jobs map[string]workflowJob `json:"jobs"`
}

func readWorkflow(t *testing.T) workflow {
	t.Helper()
	data, err := os.ReadFile(workflowFile)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(data, &w); err != nil {
		t.Fatalf("%s: %v", workflowFile, err)
	}
	return w
}

// runs reports whether a step of the job runs a command matching pattern.
func (j workflowJob) runs(pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, s := range j.Steps {
		if re.MatchString(s.Run) {
			return true
		}
	}
	return false
}

func (j workflowJob) uses(action string) (workflowStep, bool) {
	for _, s := range j.Steps {
		if name, _, _ := strings.Cut(s.Uses, "@"); name == action {
			return s, true
		}
	}
	return workflowStep{}, false
}

// TestWorkflow: CI on GitHub runs what CI runs everywhere (.ci/run), on the
// Debian and Go the project is built for; a version tag publishes, only
// after the tests pass, the binaries `make release` builds and the image
// for the same platforms; every action is pinned to a release.
func TestWorkflow(t *testing.T) {
	w := readWorkflow(t)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("../go.mod has no go directive")
	}

	test, ok := w.Jobs["test"]
	switch {
	case !ok:
		t.Fatal("no job named test")
	case !test.runs(`(?m)^bash \.ci/run$`):
		t.Error("the test job does not run `bash .ci/run`")
	case test.Container != "golang:"+string(goVersion[1])+"-bookworm":
		t.Errorf("the test job runs in %q, want golang:%s-bookworm (.ci/run installs bookworm's packages; go.mod's Go)", test.Container, goVersion[1])
	}

	platforms := strings.Fields(makeVariables(t, "../Makefile")["RELEASE_PLATFORMS"])
	for name, check := range map[string]func(workflowJob){
		"binaries": func(j workflowJob) {
			if !j.runs(`make release VERSION="\$GITHUB_REF_NAME"`) {
				t.Error(`the binaries job does not run make release VERSION="$GITHUB_REF_NAME"`)
			}
			if !j.runs(`gh release create .*dist/migrun-\* dist/SHA256SUMS`) {
				t.Error("the binaries job does not publish dist/migrun-* and dist/SHA256SUMS")
			}
		},
		"image": func(j workflowJob) {
			build, ok := j.uses("docker/build-push-action")
			if !ok {
				t.Error("the image job does not use docker/build-push-action")
				return
			}
			with := func(k string) string { return fmt.Sprint(build.With[k]) }
			if want := strings.Join(platforms, ","); with("platforms") != want {
				t.Errorf("the image is built for %q; make release builds %q", with("platforms"), want)
			}
			if with("build-args") != "VERSION=${{ github.ref_name }}" || with("context") != "." || with("push") != "true" {
				t.Errorf("build-push-action: context %q, build-args %q, push %q; want ., VERSION=${{ github.ref_name }}, true", with("context"), with("build-args"), with("push"))
			}
		},
	} {
		j, ok := w.Jobs[name]
		if !ok {
			t.Errorf("no job named %s", name)
			continue
		}
		if j.Needs != "test" || !strings.Contains(j.If, "refs/tags/v") {
			t.Errorf("job %s: needs %v, if %q; want it to run on a v* tag and only after test", name, j.Needs, j.If)
		}
		check(j)
	}

	pinned := regexp.MustCompile(`^[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})$`)
	for name, j := range w.Jobs {
		for _, s := range j.Steps {
			if s.Uses != "" && !pinned.MatchString(s.Uses) {
				t.Errorf("job %s uses %s: pin a release (@vN) or a commit", name, s.Uses)
			}
		}
	}
}
