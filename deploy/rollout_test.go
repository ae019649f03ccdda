package deploy

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What makes the examples work on a real cluster, on the first sync: what
// a hook Job needs exists before it, a Job's Pod can complete, and the
// revision migrun reports is the image that migrated.

// hook is an object's place in its tool's hook order.
type hook struct {
	tool   string   // "Argo CD" or "Helm"
	phases []string // PreSync; pre-install, pre-upgrade
	order  int      // the Argo CD sync wave, the Helm hook weight
	key    string   // the annotation that orders it
}

// hookOf reads o's hook annotations; ok is false for an ordinary resource.
func hookOf(o object) (h hook, ok bool, err error) {
	meta, isObj := o.obj.(metav1.Object)
	if !isObj {
		return h, false, nil
	}
	ann := meta.GetAnnotations()
	switch {
	case ann["argocd.argoproj.io/hook"] != "":
		h = hook{tool: "Argo CD", phases: splitList(ann["argocd.argoproj.io/hook"]), key: "argocd.argoproj.io/sync-wave"}
	case ann["helm.sh/hook"] != "":
		h = hook{tool: "Helm", phases: splitList(ann["helm.sh/hook"]), key: "helm.sh/hook-weight"}
	default:
		return h, false, nil
	}
	if v := ann[h.key]; v != "" {
		if h.order, err = strconv.Atoi(v); err != nil {
			return h, true, fmt.Errorf("%s: %s %q is not an integer", o, h.key, v)
		}
	}
	return h, true, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(f))
	}
	return out
}

// podNeeds lists what a Pod cannot start without, as Kind/name: its
// ServiceAccount (else the Pod is not even created), the Secrets and
// ConfigMaps it reads and does not mark optional (else
// CreateContainerConfigError), and its image pull Secrets.
func podNeeds(spec *corev1.PodSpec) []string {
	var needs []string
	if spec.ServiceAccountName != "" {
		needs = append(needs, "ServiceAccount/"+spec.ServiceAccountName)
	}
	for _, s := range spec.ImagePullSecrets {
		needs = append(needs, "Secret/"+s.Name)
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, e := range c.Env {
			switch ref := e.ValueFrom; {
			case ref == nil:
			case ref.SecretKeyRef != nil && !isTrue(ref.SecretKeyRef.Optional):
				needs = append(needs, "Secret/"+ref.SecretKeyRef.Name)
			case ref.ConfigMapKeyRef != nil && !isTrue(ref.ConfigMapKeyRef.Optional):
				needs = append(needs, "ConfigMap/"+ref.ConfigMapKeyRef.Name)
			}
		}
		for _, from := range c.EnvFrom {
			if from.SecretRef != nil && !isTrue(from.SecretRef.Optional) {
				needs = append(needs, "Secret/"+from.SecretRef.Name)
			}
			if from.ConfigMapRef != nil && !isTrue(from.ConfigMapRef.Optional) {
				needs = append(needs, "ConfigMap/"+from.ConfigMapRef.Name)
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && !isTrue(v.Secret.Optional) {
			needs = append(needs, "Secret/"+v.Secret.SecretName)
		}
		if v.ConfigMap != nil && !isTrue(v.ConfigMap.Optional) {
			needs = append(needs, "ConfigMap/"+v.ConfigMap.Name)
		}
	}
	slices.Sort(needs)
	return slices.Compact(needs)
}

// exampleOf names the set of objects applied together: a directory, or
// one file of helm/rendered/ (one `helm template` each).
func exampleOf(file string) string {
	if strings.HasPrefix(file, "helm/rendered/") {
		return file
	}
	return path.Dir(file)
}

// prerequisiteProblems: a hook Job's needs that the same example defines
// must be hooks of the same tool, in every phase the Job runs in, ordered
// before it. Argo CD runs PreSync hooks before any Sync-phase resource,
// whatever its sync wave, and Helm applies a chart's ordinary resources
// only after its pre-install hooks: an ordinary Secret does not exist yet
// when the Job's Pod starts on the first sync. Needs defined elsewhere are
// created outside the app, before any sync.
func prerequisiteProblems(objs []object) []string {
	var problems []string
	groups := map[string][]object{}
	for _, o := range objs {
		groups[exampleOf(o.file)] = append(groups[exampleOf(o.file)], o)
		if meta, ok := o.obj.(metav1.Object); ok {
			if _, set := meta.GetAnnotations()["argocd.argoproj.io/hook-weight"]; set {
				problems = append(problems, fmt.Sprintf("%s: Argo CD has no argocd.argoproj.io/hook-weight and ignores it: hooks run in the order of argocd.argoproj.io/sync-wave", o))
			}
		}
	}
	for _, group := range groups {
		defined := map[string]object{}
		for _, o := range group {
			defined[o.kind+"/"+o.name] = o
		}
		for _, o := range group {
			job, ok := o.obj.(*batchv1.Job)
			if !ok {
				continue
			}
			h, isHook, err := hookOf(o)
			if err != nil {
				problems = append(problems, err.Error())
			}
			if !isHook {
				continue
			}
			for _, need := range podNeeds(&job.Spec.Template.Spec) {
				d, ok := defined[need]
				if !ok {
					continue
				}
				dh, dIsHook, err := hookOf(d)
				switch {
				case err != nil:
					problems = append(problems, err.Error())
				case !dIsHook:
					problems = append(problems, fmt.Sprintf("%s needs %s, an ordinary resource, which %s applies only after the Job's %s hooks: on a first sync the Job's Pod cannot start. Make it a %s hook with a lower %s, or create it outside the app", o, need, h.tool, strings.Join(h.phases, ","), h.tool, h.key))
				case dh.tool != h.tool:
					problems = append(problems, fmt.Sprintf("%s needs %s, a %s hook; the Job is a %s hook", o, need, dh.tool, h.tool))
				case slices.ContainsFunc(h.phases, func(p string) bool { return !slices.Contains(dh.phases, p) }):
					problems = append(problems, fmt.Sprintf("%s needs %s, a hook in %v only; the Job runs in %v", o, need, dh.phases, h.phases))
				case dh.order >= h.order:
					problems = append(problems, fmt.Sprintf("%s needs %s, whose %s %d is not below the Job's %d", o, need, h.key, dh.order, h.order))
				}
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// TestPrerequisitesComeFirst: in every example, what a hook Job needs
// exists before it, on the first sync too.
func TestPrerequisitesComeFirst(t *testing.T) {
	for _, p := range prerequisiteProblems(manifests(t)) {
		t.Error(p)
	}
}

// jobCompletionProblems: a Job's Pod completes only when all its
// containers have exited, so its only container is the migration; a proxy
// it needs runs as a native sidecar that the kubelet starts first (and,
// with a startup probe, waits for) and stops after the migration; and
// Istio must not inject a classic sidecar.
func jobCompletionProblems(o object) []string {
	job, ok := o.obj.(*batchv1.Job)
	if !ok {
		return nil
	}
	var problems []string
	tmpl := job.Spec.Template
	if n := len(tmpl.Spec.Containers); n != 1 {
		problems = append(problems, fmt.Sprintf("%s: %d containers: a Job completes only when all have exited; run a proxy as a native sidecar (an init container with restartPolicy: Always, Kubernetes >= 1.29)", o, n))
	}
	for _, c := range tmpl.Spec.InitContainers {
		if isSidecar(c) && c.StartupProbe == nil {
			problems = append(problems, fmt.Sprintf("%s: native sidecar %q has no startupProbe: the migration would start before it is ready", o, c.Name))
		}
	}
	optedOut := tmpl.Labels["sidecar.istio.io/inject"] == "false" || tmpl.Annotations["sidecar.istio.io/inject"] == "false"
	native := tmpl.Annotations["sidecar.istio.io/nativeSidecar"] == "true"
	if !optedOut && !native {
		problems = append(problems, fmt.Sprintf(`%s: in a namespace with Istio injection, its istio-proxy would never exit and the Job never complete: label the Pod sidecar.istio.io/inject: "false", or annotate it sidecar.istio.io/nativeSidecar: "true"`, o))
	}
	return problems
}

// TestJobsComplete: every example Job can complete with a sidecar around.
func TestJobsComplete(t *testing.T) {
	jobs := 0
	for _, o := range manifests(t) {
		if _, ok := o.obj.(*batchv1.Job); ok {
			jobs++
		}
		for _, p := range jobCompletionProblems(o) {
			t.Error(p)
		}
	}
	if jobs < 4 {
		t.Errorf("checked %d Jobs, want the 4 of argocd, helm/rendered and init-container", jobs)
	}
}

// splitImage splits an image reference into its repository and tag
// (without a digest).
func splitImage(image string) (repo, tag string) {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon], image[colon+1:]
	}
	return image, ""
}

const versionLabel = "app.kubernetes.io/version"

// revisionProblems: in each Pod running the app's image, MIGRUN_REVISION
// (set by every `migrun run`) and the version labels of the Pod and its
// owner are that image's tag; with want, the tag is want and so is every
// object's version label.
func revisionProblems(objs []object, want string) []string {
	var problems []string
	for _, o := range objs {
		meta, ok := o.obj.(metav1.Object)
		if !ok {
			continue
		}
		spec := podSpec(o)
		if spec == nil {
			if v, ok := meta.GetLabels()[versionLabel]; ok && want != "" && v != want {
				problems = append(problems, fmt.Sprintf("%s: label %s=%q, want %q", o, versionLabel, v, want))
			}
			continue
		}
		tag := ""
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			if repo, t := splitImage(c.Image); repo == appImage {
				if tag != "" && t != tag {
					problems = append(problems, fmt.Sprintf("%s: runs %s at two tags, %s and %s", o, appImage, tag, t))
				}
				tag = t
			}
		}
		if tag == "" {
			problems = append(problems, fmt.Sprintf("%s: runs no %s:<tag>", o, appImage))
			continue
		}
		if want != "" && tag != want {
			problems = append(problems, fmt.Sprintf("%s: image tag %q, want %q", o, tag, want))
		}
		for what, labels := range map[string]map[string]string{"its": meta.GetLabels(), "its Pod template's": templateLabels(o)} {
			if v := labels[versionLabel]; v != tag {
				problems = append(problems, fmt.Sprintf("%s: %s label %s=%q, want the image tag %q", o, what, versionLabel, v, tag))
			}
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			line := slices.Concat(c.Command, c.Args)
			if len(line) < 2 || path.Base(line[0]) != "migrun" || line[1] != "run" {
				continue
			}
			switch e, ok := envVar(c, "MIGRUN_REVISION"); {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s container %q: set MIGRUN_REVISION to the image tag %q", o, c.Name, tag))
			case e.Value != tag:
				problems = append(problems, fmt.Sprintf("%s container %q: MIGRUN_REVISION=%q, but the image tag is %q", o, c.Name, e.Value, tag))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

func templateLabels(o object) map[string]string {
	switch v := o.obj.(type) {
	case *batchv1.Job:
		return v.Spec.Template.Labels
	case *appsv1.Deployment:
		return v.Spec.Template.Labels
	}
	return nil
}

// checkRevisions reports revisionProblems as test errors.
func checkRevisions(t *testing.T, objs []object, want string) {
	t.Helper()
	if len(objs) == 0 {
		t.Error("no objects to check")
	}
	for _, p := range revisionProblems(objs, want) {
		t.Error(p)
	}
}

// TestRevisionsInStep: in every example the reported revision and the
// version labels are the image's tag (helm_test.go and kustomize_test.go
// change the tag and check again).
func TestRevisionsInStep(t *testing.T) {
	checkRevisions(t, manifests(t), "")
}

// TestMinimumKubernetesVersions: a file using a feature of a recent
// Kubernetes says which version it needs.
func TestMinimumKubernetesVersions(t *testing.T) {
	needs := map[string]map[string]string{} // file -> version -> feature
	for _, o := range manifests(t) {
		need := func(version, feature string) {
			if needs[o.file] == nil {
				needs[o.file] = map[string]string{}
			}
			needs[o.file][version] = feature
		}
		if job, ok := o.obj.(*batchv1.Job); ok && job.Spec.PodFailurePolicy != nil {
			need("1.26", "podFailurePolicy")
		}
		if spec := podSpec(o); spec != nil && slices.ContainsFunc(spec.InitContainers, isSidecar) {
			need("1.29", "native sidecars")
		}
	}
	for file, versions := range needs {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for version, feature := range versions {
			if !strings.Contains(string(text), version) {
				t.Errorf("%s uses %s: say in a comment that it needs Kubernetes >= %s", file, feature, version)
			}
		}
	}
	if len(needs) < 4 {
		t.Errorf("found %d files needing a recent Kubernetes, want at least 4: %v", len(needs), needs)
	}
}

// TestExampleSecretsArePlaceholders: a Secret in an example holds
// placeholders, never something that looks like a real credential.
func TestExampleSecretsArePlaceholders(t *testing.T) {
	for _, o := range manifests(t) {
		s, ok := o.obj.(*corev1.Secret)
		if !ok {
			continue
		}
		if len(s.Data) > 0 {
			t.Errorf("%s: use stringData with visible CHANGE-ME placeholders, not data", o)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "CHANGE-ME") {
				t.Errorf("%s: %s=%q holds no CHANGE-ME placeholder", o, k, v)
			}
		}
	}
}

// TestRolloutRulesCatch: each rule above finds the mistake it exists for,
// so the example tests cannot pass vacuously.
func TestRolloutRulesCatch(t *testing.T) {
	job := func(annotations, podLabels, extraInit string) string {
		return `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  labels: {app.kubernetes.io/version: "1.2.3"}
  annotations: {` + annotations + `}
spec:
  template:
    metadata:
      labels: {app.kubernetes.io/version: "1.2.3", ` + podLabels + `}
    spec:
      serviceAccountName: migrate
      restartPolicy: Never
      initContainers: [` + extraInit + `]
      containers:
        - name: migrate
          image: ` + appImage + `:1.2.3
          command: [migrun, run]
          env:
            - {name: MIGRUN_REVISION, value: "1.2.3"}
            - {name: DATABASE_URL, valueFrom: {secretKeyRef: {name: db, key: DATABASE_URL}}}
`
	}
	const (
		presync   = `argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/sync-wave: "0"`
		preHelm   = `helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-weight: "-5"`
		noIstio   = `sidecar.istio.io/inject: "false"`
		secret    = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  annotations: {%s}\n---\n"
		sa        = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: migrate\n  annotations: {%s}\n---\n"
		proxy     = `{name: proxy, image: proxy:1, restartPolicy: Always}`
		proxyOK   = `{name: proxy, image: proxy:1, restartPolicy: Always, startupProbe: {httpGet: {path: /startup, port: 9090}}}`
		wrongRev  = `            - {name: MIGRUN_REVISION, value: "1.2.2"}`
		argoWave1 = `argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/sync-wave: "-1"`
	)
	tests := []struct {
		name, docs, want string // want: a problem containing it; "" for none
	}{
		{"prerequisites as PreSync hooks in a lower wave", fmt.Sprintf(secret, argoWave1) + fmt.Sprintf(sa, argoWave1) + job(presync, noIstio, ""), ""},
		{"prerequisites created outside the app", job(presync, noIstio, ""), ""},
		{"an ordinary Secret in a lower sync wave", fmt.Sprintf(secret, `argocd.argoproj.io/sync-wave: "-5"`) + job(presync, noIstio, ""), "an ordinary resource"},
		{"a hook Secret in the Job's own wave", fmt.Sprintf(secret, presync) + job(presync, noIstio, ""), "is not below"},
		{"Argo CD's nonexistent hook-weight", fmt.Sprintf(secret, `argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-weight: "-1"`) + job(presync, noIstio, ""), "no argocd.argoproj.io/hook-weight"},
		{"a Helm ServiceAccount hook missing pre-upgrade", fmt.Sprintf(sa, `helm.sh/hook: pre-install, helm.sh/hook-weight: "-10"`) + job(preHelm, noIstio, ""), "only"},
		{"a Helm ServiceAccount hook in a lower weight", fmt.Sprintf(sa, `helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-weight: "-10"`) + job(preHelm, noIstio, ""), ""},
		{"Istio would inject a classic sidecar", job(presync, "", ""), "never exit"},
		{"Istio's native sidecar", strings.Replace(job(presync, "", ""), "  template:\n    metadata:\n", "  template:\n    metadata:\n      annotations: {sidecar.istio.io/nativeSidecar: \"true\"}\n", 1), ""},
		{"a native sidecar with a startup probe", job(presync, noIstio, proxyOK), ""},
		{"a native sidecar without a startup probe", job(presync, noIstio, proxy), "no startupProbe"},
		{"a proxy as an ordinary container", strings.Replace(job(presync, noIstio, ""), "      containers:\n", "      containers:\n        - {name: proxy, image: proxy:1}\n", 1), "2 containers"},
		{"MIGRUN_REVISION behind the image", strings.Replace(job(presync, noIstio, ""), `            - {name: MIGRUN_REVISION, value: "1.2.3"}`, wrongRev, 1), `MIGRUN_REVISION="1.2.2"`},
		{"a version label behind the image", strings.Replace(job(presync, noIstio, ""), `labels: {app.kubernetes.io/version: "1.2.3"}`, `labels: {app.kubernetes.io/version: "1.2.2"}`, 1), `label app.kubernetes.io/version="1.2.2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := decodeManifests("argocd/x.yaml", []byte(tt.docs))
			for _, err := range errs {
				t.Fatal(err)
			}
			problems := prerequisiteProblems(objs)
			for _, o := range objs {
				problems = append(problems, jobCompletionProblems(o)...)
			}
			problems = append(problems, revisionProblems(objs, "")...)
			found := tt.want != "" && slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) })
			switch {
			case tt.want == "" && len(problems) > 0:
				t.Errorf("want no problem, got %q", problems)
			case tt.want != "" && !found:
				t.Errorf("want a problem containing %q, got %q", tt.want, problems)
			}
		})
	}
}
