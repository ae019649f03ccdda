package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// kustomizeInstall is how .ci/run installs Kustomize (the version pinned there too).
const kustomizeInstall = "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2"

// TestKustomizeRevisionInStep: argocd/kustomization.yaml builds every
// object of the Argo CD example, and a new image tag set the way Argo CD
// and CI set it (`kustomize edit set image`) reaches MIGRUN_REVISION and the
// version labels too. The tag is all digits, which YAML would read as a
// number if the replacement lost its quotes.
func TestKustomizeRevisionInStep(t *testing.T) {
	t.Parallel()
	kustomize := tool(t, "kustomize", kustomizeInstall)

	built := run(t, "argocd", kustomize, "build", ".")
	objs, errs := decodeManifests("kustomize build argocd", built)
	for _, err := range errs {
		t.Error(err)
	}
	checkRevisions(t, objs, "1.2.3")
	var want, got []string
	for _, o := range manifests(t) {
		if filepath.Dir(o.file) == "argocd" {
			want = append(want, o.kind+"/"+o.name)
		}
	}
	for _, o := range objs {
		got = append(got, o.kind+"/"+o.name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomize build argocd makes %v; the files in argocd/ hold %v (list each in kustomization.yaml's resources)", got, want)
	}

	dir := t.TempDir()
	files, err := filepath.Glob("argocd/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, kustomize, "edit", "set", "image", appImage+":20240101")
	objs, errs = decodeManifests("kustomize build, new tag", run(t, dir, kustomize, "build", "."))
	for _, err := range errs {
		t.Error(err)
	}
	checkRevisions(t, objs, "20240101")
}
