package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// object is one document of a manifest file, decoded into its API type.
type object struct {
	file string // slash-separated, relative to deploy/
	kind string
	name string
	obj  any
}

func (o object) String() string { return fmt.Sprintf("%s: %s %s", o.file, o.kind, o.name) }

// apiTypes are the kinds the examples may use; anything else fails.
var apiTypes = map[string]func() any{
	"apps/v1/Deployment": func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":       func() any { return &batchv1.Job{} },
	"v1/Secret":          func() any { return &corev1.Secret{} },
	"v1/ConfigMap":       func() any { return &corev1.ConfigMap{} },
	"v1/ServiceAccount":  func() any { return &corev1.ServiceAccount{} },
}

// notManifests are the YAML files under deploy/ that are not Kubernetes
// objects: Helm's templates (rendered/ holds their output), chart and
// values files, checked in helm_test.go; Kustomize's kustomization, checked
// in kustomize_test.go.
func notManifests(p string) bool {
	base := path.Base(p)
	return strings.HasPrefix(p, "helm/templates/") || p == "helm/Chart.yaml" ||
		(path.Dir(p) == "helm" && strings.HasPrefix(base, "values")) || base == "kustomization.yaml"
}

var (
	manifestsOnce sync.Once
	manifestObjs  []object
	manifestErrs  []error
)

// manifests decodes every manifest under deploy/ once. Parse errors are
// reported by TestManifestsAreStrictAPIObjects; the other tests check what
// did parse.
func manifests(t *testing.T) []object {
	t.Helper()
	manifestsOnce.Do(func() { manifestObjs, manifestErrs = loadManifests(".") })
	if len(manifestObjs) == 0 {
		t.Fatalf("no manifests parsed: %v", errors.Join(manifestErrs...))
	}
	return manifestObjs
}

func loadManifests(root string) ([]object, []error) {
	var objs []object
	var errs []error
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := filepath.ToSlash(p)
		if ext := path.Ext(rel); (ext != ".yaml" && ext != ".yml") || notManifests(rel) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		o, e := decodeManifests(rel, data)
		objs, errs = append(objs, o...), append(errs, e...)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return objs, errs
}

// decodeManifests decodes each YAML document of data strictly into its
// typed API object: an unknown or misspelt field, a duplicate key or a
// value of the wrong type is an error, as is an unknown kind.
func decodeManifests(file string, data []byte) ([]object, []error) {
	var objs []object
	var errs []error
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, i, err))
			break
		}
		var generic any
		if err := yaml.Unmarshal(doc, &generic); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, i, err))
			continue
		}
		if generic == nil { // only comments
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, i, err))
			continue
		}
		key := meta.APIVersion + "/" + meta.Kind
		newObj, ok := apiTypes[key]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: document %d: kind %q is not one the tests know (add it to apiTypes)", file, i, key))
			continue
		}
		obj := newObj()
		if err := unmarshalStrict(doc, obj); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: not a valid %s: %w", file, i, key, err))
			continue
		}
		objs = append(objs, object{file: file, kind: meta.Kind, name: objectName(obj), obj: obj})
	}
	return objs, errs
}

// unmarshalStrict decodes YAML as the API server's strict field validation
// does: duplicate keys, unknown fields and fields whose case differs from
// the API's (encoding/json, and so yaml.UnmarshalStrict, would accept
// "stringdata" for "stringData") are errors.
func unmarshalStrict(doc []byte, obj any) error {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func objectName(obj any) string {
	switch v := obj.(type) {
	case *appsv1.Deployment:
		return v.Name
	case *batchv1.Job:
		return v.Name
	case *corev1.Secret:
		return v.Name
	case *corev1.ConfigMap:
		return v.Name
	case *corev1.ServiceAccount:
		return v.Name
	}
	return ""
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

// migrunUse is one container that runs migrun.
type migrunUse struct {
	object
	pod       *corev1.PodSpec
	container corev1.Container
	init      bool
	argv      []string // after the migrun executable
}

func (u migrunUse) String() string {
	return fmt.Sprintf("%s container %q", u.object, u.container.Name)
}

// migrunImage is migrun's own image, whose entrypoint is /migrun.
const migrunImage = "ghcr.io/migrun/migrun"

// migrunUses lists the containers that run migrun, directly as their
// command or as the migrun image's entrypoint. A container that mentions
// migrun any other way (through a shell) is returned as a problem: migrun
// must be the process the kubelet signals and whose exit status it reads.
func migrunUses(objs []object) (uses []migrunUse, problems []string) {
	for _, o := range objs {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for i, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			u := migrunUse{object: o, pod: spec, container: c, init: i < len(spec.InitContainers)}
			line := slices.Concat(c.Command, c.Args)
			switch {
			case len(c.Command) > 0 && path.Base(c.Command[0]) == "migrun":
				u.argv = line[1:]
			case len(c.Command) == 0 && strings.HasPrefix(c.Image, migrunImage+":"):
				u.argv = c.Args
			default:
				if slices.ContainsFunc(line, func(a string) bool { return strings.Contains(a, "migrun") }) {
					problems = append(problems, fmt.Sprintf("%s: runs migrun indirectly (%q): make migrun the command, so it gets the signals and its exit status is the container's", u, line))
				}
				continue
			}
			uses = append(uses, u)
		}
	}
	return uses, problems
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// effective is the value migrun would use for variable name: its flag,
// else the variable, else a fallback name, else its envDefault. fromSecret
// says the value comes from elsewhere (valueFrom) and is unknown here.
func effective(cfg migrunConfig, u migrunUse, inv invocation, name string) (value string, fromSecret bool) {
	for flag, def := range cfg.flags[inv.sub] {
		if def.env == name {
			if v, ok := inv.flags[flag]; ok {
				return v, false
			}
		}
	}
	for _, n := range append([]string{name}, cfg.order[name]...) {
		if e, ok := envVar(u.container, n); ok {
			return e.Value, e.ValueFrom != nil
		}
	}
	return cfg.vars[name].def, false
}

// TestManifestsAreStrictAPIObjects: every manifest is a valid typed API
// object, and each example file holds what it is meant to (so a file the
// walk misses or a document split wrongly cannot go unnoticed).
func TestManifestsAreStrictAPIObjects(t *testing.T) {
	objs := manifests(t)
	for _, err := range manifestErrs {
		t.Error(err)
	}
	kinds := map[string][]string{}
	for _, o := range objs {
		kinds[o.file] = append(kinds[o.file], o.kind)
	}
	want := map[string][]string{
		"argocd/prerequisites.yaml":           {"ServiceAccount", "Secret"},
		"argocd/migrate-job.yaml":             {"Job"},
		"helm/rendered/migrate-job.yaml":      {"Job"},
		"helm/rendered/gke-cloudsql.yaml":     {"ServiceAccount", "Job"},
		"init-container/deployment.yaml":      {"Deployment"},
		"init-container/deployment-wait.yaml": {"ServiceAccount", "Job", "Deployment"},
	}
	for file := range kinds {
		if want[file] == nil {
			t.Errorf("%s: a manifest no test expects: add it to the list above", file)
		}
	}
	for file, k := range want {
		if !slices.Equal(kinds[file], k) {
			t.Errorf("%s holds %v, want %v", file, kinds[file], k)
		}
	}
}

// TestDecodeIsStrict: the decoder refuses what the API server would, so
// the other tests are not checking a lenient reading.
func TestDecodeIsStrict(t *testing.T) {
	tests := []struct{ name, doc, wantErr string }{
		{"unknown field", "apiVersion: batch/v1\nkind: Job\nspec:\n  backofLimit: 1\n", "unknown field"},
		{"wrong type", "apiVersion: batch/v1\nkind: Job\nspec:\n  backoffLimit: one\n", "cannot unmarshal"},
		{"duplicate key", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: a\n  name: b\n", "already set"},
		{"field name in the wrong case", "apiVersion: v1\nkind: Secret\nstringdata: {}\n", "unknown field"},
		{"unknown kind", "apiVersion: batch/v1\nkind: CronJobb\n", "not one the tests know"},
		{"bad second document", "apiVersion: v1\nkind: Secret\n---\napiVersion: v1\nkind: Secret\nstringdata: {}\n", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := decodeManifests("x.yaml", []byte(tt.doc))
			if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	objs, errs := decodeManifests("x.yaml", []byte("# only a comment\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n---\n"))
	if len(errs) > 0 || len(objs) != 1 || objs[0].name != "a" {
		t.Errorf("got %v %v, want one ServiceAccount", objs, errs)
	}
}

// TestMigrunNamesExist: every subcommand, flag and variable of migrun the
// examples use is one cmd/migrun defines.
func TestMigrunNamesExist(t *testing.T) {
	cfg := readMigrunConfig(t)
	uses, problems := migrunUses(manifests(t))
	for _, p := range problems {
		t.Error(p)
	}
	if len(uses) < 5 {
		t.Errorf("found %d containers running migrun, want at least 5", len(uses))
	}
	for _, u := range uses {
		inv, err := parseInvocation(cfg, u.argv)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if inv.sub != "run" && len(inv.command) > 0 {
			t.Errorf("%s: migrun %s takes no command, got %q", u, inv.sub, inv.command)
		}
		databases, _ := effective(cfg, u, inv, "MIGRUN_DATABASES")
		for _, e := range u.container.Env {
			if err := checkVariable(cfg, e.Name, databases); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}
	}
}

// checkVariable says whether migrun reads name, for the names that look
// like migrun's: MIGRUN_*, SLACK_*, DATABASE_URL and <NAME>_DATABASE_URL
// (only for a database MIGRUN_DATABASES lists), RAILS_ENV, RACK_ENV,
// POD_NAME. Other variables are the command's business.
func checkVariable(cfg migrunConfig, name, databases string) error {
	_, isVar := cfg.vars[name]
	_, isAlias := cfg.aliases[name]
	switch {
	case isVar || isAlias:
		return nil
	case strings.HasPrefix(name, "MIGRUN_"), strings.HasPrefix(name, "SLACK_"), name == "RAILS_ENV", name == "RACK_ENV":
		return fmt.Errorf("migrun reads no variable %s (cmd/migrun has no env:%q tag or fallback)", name, name)
	case strings.HasSuffix(name, "_DATABASE_URL"):
		db := strings.ToLower(strings.TrimSuffix(name, "_DATABASE_URL"))
		for _, entry := range strings.Split(databases, ",") {
			if n, _, _ := strings.Cut(strings.TrimSpace(entry), ":"); n == db {
				return nil
			}
		}
		return fmt.Errorf("%s is read only for a database named %q in MIGRUN_DATABASES (which is %q)", name, db, databases)
	case name == "POD_NAME":
		if !cfg.others[name] {
			return fmt.Errorf("migrun does not read %s", name)
		}
	}
	return nil
}

// ddlLockTimeout is the setting every example migration sets.
const ddlLockTimeout = "MIGRUN_DDL_LOCK_TIMEOUT"

// TestNoSecretInManifests: credentials come from Secrets, never literals.
func TestNoSecretInManifests(t *testing.T) {
	secret := func(name string) bool {
		return strings.HasSuffix(name, "DATABASE_URL") || strings.Contains(name, "WEBHOOK") ||
			strings.Contains(name, "WEB_HOOK") || strings.HasSuffix(name, "_TOKEN") || strings.HasSuffix(name, "PASSWORD")
	}
	for _, o := range manifests(t) {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, e := range c.Env {
				if secret(e.Name) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s container %q: %s must come from a Secret (valueFrom.secretKeyRef)", o, c.Name, e.Name)
				}
			}
		}
	}
}

// TestMigrationJobs: the Jobs that migrate fail the deploy on failure, keep
// their logs, and time out in migrun rather than in the kubelet.
func TestMigrationJobs(t *testing.T) {
	cfg := readMigrunConfig(t)
	objs := manifests(t)
	jobs := 0
	uses, _ := migrunUses(objs)
	for _, u := range uses {
		job, ok := u.obj.(*batchv1.Job)
		if !ok {
			continue
		}
		inv, err := parseInvocation(cfg, u.argv)
		if err != nil || inv.sub != "run" {
			continue // reported by TestMigrunNamesExist, or not a migration
		}
		jobs++
		ann := job.Annotations
		dir, _, _ := strings.Cut(u.file, "/")
		hook := false
		switch dir {
		case "argocd":
			hook = true
			if ann["argocd.argoproj.io/hook"] != "PreSync" || ann["argocd.argoproj.io/hook-delete-policy"] != "BeforeHookCreation" || ann["argocd.argoproj.io/sync-wave"] == "" {
				t.Errorf("%s: want argocd.argoproj.io/hook: PreSync, hook-delete-policy: BeforeHookCreation and a sync-wave, got %v", u, ann)
			}
		case "helm":
			hook = true
			if ann["helm.sh/hook"] != "pre-install,pre-upgrade" || ann["helm.sh/hook-delete-policy"] != "before-hook-creation" || ann["helm.sh/hook-weight"] == "" {
				t.Errorf("%s: want helm.sh/hook: pre-install,pre-upgrade, a hook-weight and hook-delete-policy: before-hook-creation, got %v", u, ann)
			}
		}
		if hook && job.Spec.TTLSecondsAfterFinished != nil {
			t.Errorf("%s: a hook Job is replaced at the next sync; ttlSecondsAfterFinished would delete its logs sooner", u)
		}
		if job.Spec.BackoffLimit == nil {
			t.Errorf("%s: set backoffLimit (the default 6 reruns a failed migration six times)", u)
		}
		if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("%s: restartPolicy %q, want Never (each attempt a Pod of its own, its logs kept)", u, job.Spec.Template.Spec.RestartPolicy)
		}
		if u.container.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			t.Errorf("%s: terminationMessagePolicy %q, want FallbackToLogsOnError", u, u.container.TerminationMessagePolicy)
		}
		if _, ok := envVar(u.container, "MIGRUN_LOCK_TIMEOUT"); !ok && inv.flags["lock-timeout"] == "" {
			t.Errorf("%s: set MIGRUN_LOCK_TIMEOUT explicitly, so the deadline can be checked against it", u)
		}
		checkDDLLockTimeout(t, u)
		lock := durationSetting(t, u, cfg, inv, "MIGRUN_LOCK_TIMEOUT")
		connect := durationSetting(t, u, cfg, inv, "MIGRUN_CONNECT_TIMEOUT")
		if job.Spec.ActiveDeadlineSeconds == nil {
			t.Errorf("%s: set activeDeadlineSeconds above the lock timeout %s + connect timeout %s", u, lock, connect)
		} else if deadline := time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second; deadline <= lock+connect {
			t.Errorf("%s: activeDeadlineSeconds %s does not exceed the lock timeout %s + connect timeout %s: the kubelet would kill migrun before it can report its own timeout", u, deadline, lock, connect)
		}
		checkPodFailurePolicy(t, u, job)
	}
	if jobs < 3 {
		t.Errorf("found %d migration Jobs, want 3 (argocd, helm, init-container/deployment-wait)", jobs)
	}
}

// checkDDLLockTimeout: a migrating container bounds how long its DDL waits
// for a table lock, which a queue of application queries waits behind.
func checkDDLLockTimeout(t *testing.T, u migrunUse) {
	t.Helper()
	e, ok := envVar(u.container, ddlLockTimeout)
	if !ok {
		t.Errorf("%s: set %s (e.g. 5s)", u, ddlLockTimeout)
		return
	}
	if d, err := time.ParseDuration(e.Value); err != nil || d <= 0 || d > time.Minute {
		t.Errorf("%s: %s=%q: want a duration of seconds (5s), not minutes: queries queue behind the waiting DDL", u, ddlLockTimeout, e.Value)
	}
}

func durationSetting(t *testing.T, u migrunUse, cfg migrunConfig, inv invocation, name string) time.Duration {
	t.Helper()
	v, fromSecret := effective(cfg, u, inv, name)
	if fromSecret {
		t.Errorf("%s: %s comes from elsewhere; set it literally so it can be checked", u, name)
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Errorf("%s: %s: %v", u, name, err)
	}
	return d
}

// checkPodFailurePolicy applies the API server's rules the strict decoding
// cannot see, and keeps "database unreachable" retryable.
func checkPodFailurePolicy(t *testing.T, u migrunUse, job *batchv1.Job) {
	t.Helper()
	policy := job.Spec.PodFailurePolicy
	if policy == nil {
		return
	}
	for i, rule := range policy.Rules {
		req := rule.OnExitCodes
		if req == nil {
			continue
		}
		if req.ContainerName != nil && *req.ContainerName != u.container.Name {
			t.Errorf("%s: podFailurePolicy rule %d names container %q", u, i, *req.ContainerName)
		}
		if !slices.IsSorted(req.Values) || len(slices.Compact(slices.Clone(req.Values))) != len(req.Values) {
			t.Errorf("%s: podFailurePolicy rule %d: values must be ordered and unique: %v", u, i, req.Values)
		}
		if req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(req.Values, 0) {
			t.Errorf("%s: podFailurePolicy rule %d: 0 is not allowed with In", u, i)
		}
		if rule.Action == batchv1.PodFailurePolicyActionFailJob && req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(req.Values, 69) {
			t.Errorf("%s: podFailurePolicy rule %d fails the Job on 69 (database unreachable), the one failure a retry may fix", u, i)
		}
	}
}

// TestInitContainers: migrating in every Pod posts only changes; waiting
// Pods wait for the image they run, with a bound.
func TestInitContainers(t *testing.T) {
	cfg := readMigrunConfig(t)
	objs := manifests(t)
	uses, _ := migrunUses(objs)
	migratingImages := map[string][]string{} // file -> images of migration Jobs
	for _, u := range uses {
		if inv, err := parseInvocation(cfg, u.argv); err == nil && inv.sub == "run" {
			if _, ok := u.obj.(*batchv1.Job); ok {
				migratingImages[u.file] = append(migratingImages[u.file], u.container.Image)
			}
		}
	}
	seen := map[string]bool{}
	for _, u := range uses {
		if _, ok := u.obj.(*appsv1.Deployment); !ok {
			continue
		}
		if !u.init {
			t.Errorf("%s: in a Deployment, migrun belongs in an init container", u)
			continue
		}
		inv, err := parseInvocation(cfg, u.argv)
		if err != nil {
			continue // reported by TestMigrunNamesExist
		}
		seen[inv.sub] = true
		for _, app := range u.pod.Containers {
			if app.Image != u.container.Image {
				t.Errorf("%s: image %s, but the app container %q runs %s: migrun must see the migrations the app expects", u, u.container.Image, app.Name, app.Image)
			}
		}
		switch inv.sub {
		case "run":
			if v, _ := effective(cfg, u, inv, "MIGRUN_NOTIFY"); v != "changes" {
				t.Errorf("%s: every Pod migrates; set MIGRUN_NOTIFY=changes (is %q) so Slack gets one message per deploy, not one per Pod", u, v)
			}
			checkDDLLockTimeout(t, u)
		case "wait":
			if _, ok := envVar(u.container, "MIGRUN_WAIT_TIMEOUT"); !ok && inv.flags["wait-timeout"] == "" {
				t.Errorf("%s: set MIGRUN_WAIT_TIMEOUT explicitly", u)
			}
			if !slices.Contains(migratingImages[u.file], u.container.Image) {
				t.Errorf("%s: waits for the migrations of %s, but no migration Job in the same file runs that image (it has %v)", u, u.container.Image, migratingImages[u.file])
			}
		}
	}
	for _, sub := range []string{"run", "wait"} {
		if !seen[sub] {
			t.Errorf("no Deployment runs `migrun %s` in an init container", sub)
		}
	}
}

// TestPodsAreLockedDown: every container runs non-root, read-only, without
// privileges. A read-only container that boots Rails (the app, `migrun
// run`) has emptyDirs where a Rails image writes: /tmp (migrun's Ruby sync
// file) and the app's tmp/ (Bootsnap's cache, pid files); `migrun wait`
// writes nothing.
func TestPodsAreLockedDown(t *testing.T) {
	for _, o := range manifests(t) {
		pod := podSpec(o)
		if pod == nil {
			continue
		}
		psc := pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			where := fmt.Sprintf("%s container %q", o, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
				t.Errorf("%s: set runAsNonRoot", where)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: set seccompProfile RuntimeDefault", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: set allowPrivilegeEscalation: false", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: drop ALL capabilities", where)
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				t.Errorf("%s: set readOnlyRootFilesystem", where)
				continue
			}
			if repo, _ := splitImage(c.Image); repo != appImage || isMigrunWait(c) {
				continue
			}
			for _, dir := range []string{"/tmp", railsRoot + "/tmp"} {
				if !mountsEmptyDir(pod, c, dir) {
					t.Errorf("%s: boots Rails on a read-only root filesystem: mount an emptyDir at %s", where, dir)
				}
			}
		}
	}
}

// railsRoot is the Rails image's WORKDIR (the Rails Dockerfile's /rails).
const railsRoot = "/rails"

// appImage is the examples' Rails image, with migrun copied in.
const appImage = "registry.example.com/acme/rails-app"

func isMigrunWait(c corev1.Container) bool {
	line := slices.Concat(c.Command, c.Args)
	return len(line) > 1 && path.Base(line[0]) == "migrun" && line[1] == "wait"
}

func mountsEmptyDir(pod *corev1.PodSpec, c corev1.Container, dir string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != dir || m.ReadOnly {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				return true
			}
		}
	}
	return false
}

func isTrue(b *bool) bool { return b != nil && *b }

// TestPodsWouldBeAccepted: API server rules a strict decode cannot see,
// which otherwise show up only at `kubectl apply`.
func TestPodsWouldBeAccepted(t *testing.T) {
	for _, o := range manifests(t) {
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
				t.Errorf("%s: no selector", o)
			} else {
				for k, v := range d.Spec.Selector.MatchLabels {
					if d.Spec.Template.Labels[k] != v {
						t.Errorf("%s: selector %s=%s does not match the template's labels %v", o, k, v, d.Spec.Template.Labels)
					}
				}
			}
		}
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
		}
		names := map[string]bool{}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			if names[c.Name] {
				t.Errorf("%s: two containers named %q", o, c.Name)
			}
			names[c.Name] = true
			if c.Image == "" {
				t.Errorf("%s container %q: no image", o, c.Name)
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s container %q: mounts undeclared volume %q", o, c.Name, m.Name)
				}
			}
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && (ref.SecretKeyRef.Name == "" || ref.SecretKeyRef.Key == "") {
					t.Errorf("%s container %q: %s: secretKeyRef needs a name and a key", o, c.Name, e.Name)
				}
			}
		}
		for _, c := range spec.Containers {
			if c.RestartPolicy != nil {
				t.Errorf("%s container %q: restartPolicy is for init containers only (a native sidecar)", o, c.Name)
			}
		}
		for _, c := range spec.InitContainers {
			sidecar := isSidecar(c)
			if c.RestartPolicy != nil && !sidecar {
				t.Errorf("%s init container %q: restartPolicy %q: only Always is allowed", o, c.Name, *c.RestartPolicy)
			}
			if !sidecar && (c.StartupProbe != nil || c.ReadinessProbe != nil || c.LivenessProbe != nil) {
				t.Errorf("%s init container %q: only a native sidecar (restartPolicy: Always) may have probes", o, c.Name)
			}
		}
	}
}

// isSidecar says whether an init container is a native sidecar
// (Kubernetes >= 1.29): started before the containers, stopped after them.
func isSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
