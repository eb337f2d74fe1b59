package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// fakeInspector records the references it is asked for.
type fakeInspector struct {
	mu   sync.Mutex
	refs []string
}

func (f *fakeInspector) Inspect(_ context.Context, r registry.Request) (*registry.Inspection, error) {
	f.mu.Lock()
	f.refs = append(f.refs, r.Reference)
	f.mu.Unlock()
	return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{{Reference: r.Reference}}}, nil
}

func (f *fakeInspector) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.refs)
	slices.Sort(out)
	return out
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{
		InitContainers:      []corev1.Container{{Name: "init", Image: "init:1"}},
		Containers:          []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "side", Image: "app:1"}},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "debug:1"}}},
		Volumes: []corev1.Volume{
			{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "data:1"}}},
			{Name: "empty", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
}

func template() corev1.PodTemplateSpec { return corev1.PodTemplateSpec{Spec: podSpec()} }

func raw(t testing.TB, obj runtime.Object, apiVersion, kind string) []byte {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["apiVersion"], m["kind"] = apiVersion, kind
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newHandler(t *testing.T, policies ...*v1alpha1.SlimImagePolicy) (*Handler, *fakeInspector) {
	t.Helper()
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"slimgate.dev/enabled": "true"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
	for _, p := range policies {
		b = b.WithObjects(p)
	}
	fi := &fakeInspector{}
	h, err := NewHandler(Options{Reader: b.Build(), Inspector: fi})
	if err != nil {
		t.Fatal(err)
	}
	return h, fi
}

func clusterWide() *v1alpha1.SlimImagePolicy {
	return &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce}}
}

func request(op admissionv1.Operation, group, kind, sub string, obj, old []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid", Operation: op, Namespace: "team", SubResource: sub,
		Kind:   metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
		Object: runtime.RawExtension{Raw: obj}, OldObject: runtime.RawExtension{Raw: old},
	}}
}

// Every kind is decoded and its images (init, regular, image volumes, but
// not ephemeral containers, excluded by default) are inspected once each.
func TestHandleDecodesEveryKind(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "x", Namespace: "team"}
	tmpl := template()
	cases := []struct {
		group, kind string
		obj         runtime.Object
		apiVersion  string
	}{
		{"", "Pod", &corev1.Pod{ObjectMeta: meta, Spec: podSpec()}, "v1"},
		{"", "ReplicationController", &corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Template: &tmpl}}, "v1"},
		{"apps", "Deployment", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}}, "apps/v1"},
		{"apps", "ReplicaSet", &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, "apps/v1"},
		{"apps", "StatefulSet", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}}, "apps/v1"},
		{"apps", "DaemonSet", &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}}, "apps/v1"},
		{"batch", "Job", &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}}, "batch/v1"},
		{"batch", "CronJob", &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}, "batch/v1"},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			h, fi := newHandler(t, clusterWide())
			resp := h.Handle(context.Background(), request(admissionv1.Create, c.group, c.kind, "", raw(t, c.obj, c.apiVersion, c.kind), nil))
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			if diff := cmp.Diff([]string{"app:1", "data:1", "init:1"}, fi.asked()); diff != "" {
				t.Errorf("inspected (-want +got):\n%s", diff)
			}
		})
	}
}

func TestImages(t *testing.T) {
	spec := podSpec()
	want := []Image{
		{Reference: "init:1", Container: "init", Source: sourceInitContainer, Path: "spec.template.spec.initContainers[0].image"},
		{Reference: "app:1", Container: "app", Source: sourceContainer, Path: "spec.template.spec.containers[0].image"},
		{Reference: "app:1", Container: "side", Source: sourceContainer, Path: "spec.template.spec.containers[1].image"},
		{Reference: "debug:1", Container: "debug", Source: sourceEphemeralContainer, Path: "spec.template.spec.ephemeralContainers[0].image"},
		{Reference: "data:1", Container: "data", Source: sourceVolume, Path: "spec.template.spec.volumes[0].image.reference"},
	}
	if diff := cmp.Diff(want, Images(&spec, "spec.template.spec")); diff != "" {
		t.Errorf("Images (-want +got):\n%s", diff)
	}
}

func TestHandleRequests(t *testing.T) {
	pod := func(images ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team"}}
		for i, img := range images {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: string(rune('a' + i)), Image: img})
		}
		return p
	}
	withDebug := pod("app:1")
	withDebug.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "debug:1"}}}
	debugPolicy := clusterWide()
	no := false
	debugPolicy.Spec.Exclude.EphemeralContainers = &no
	excludePolicy := clusterWide()
	excludePolicy.Spec.Exclude.Images = []string{"docker.io/library/*"}
	optIn := clusterWide()
	optIn.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"slimgate.dev/enabled": "true"}}
	optInElsewhere := clusterWide()
	optInElsewhere.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"other": "x"}}

	cases := []struct {
		name    string
		policy  *v1alpha1.SlimImagePolicy
		req     func(t *testing.T) admission.Request
		allowed bool
		code    int32
		asked   []string
	}{
		{"update judges only new images", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Update, "", "Pod", "", raw(t, pod("app:1", "new:1"), "v1", "Pod"), raw(t, pod("app:1"), "v1", "Pod"))
		}, true, 0, []string{"new:1"}},
		{"an image moved from an ephemeral container into containers is new there", clusterWide(), func(t *testing.T) admission.Request {
			moved := pod("debug:1")
			moved.Spec.EphemeralContainers = withDebug.Spec.EphemeralContainers
			return request(admissionv1.Update, "", "Pod", "", raw(t, moved, "v1", "Pod"), raw(t, withDebug, "v1", "Pod"))
		}, true, 0, []string{"debug:1"}},
		{"an image moved from containers into an image volume is new there", clusterWide(), func(t *testing.T) admission.Request {
			moved := pod("app:1")
			moved.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "new:1"}}}}
			return request(admissionv1.Update, "", "Pod", "", raw(t, moved, "v1", "Pod"), raw(t, pod("app:1", "new:1"), "v1", "Pod"))
		}, true, 0, []string{"new:1"}},
		{"label-only update judges nothing", clusterWide(), func(t *testing.T) admission.Request {
			p := pod("bloated:1")
			p.Labels = map[string]string{"a": "b"}
			return request(admissionv1.Update, "", "Pod", "", raw(t, p, "v1", "Pod"), raw(t, pod("bloated:1"), "v1", "Pod"))
		}, true, 0, nil},
		{"ephemeral containers subresource, excluded by default", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Update, "", "Pod", "ephemeralcontainers", raw(t, withDebug, "v1", "Pod"), raw(t, pod("app:1"), "v1", "Pod"))
		}, true, 0, nil},
		{"ephemeral containers judged when not excluded", debugPolicy, func(t *testing.T) admission.Request {
			return request(admissionv1.Update, "", "Pod", "ephemeralcontainers", raw(t, withDebug, "v1", "Pod"), raw(t, pod("app:1"), "v1", "Pod"))
		}, true, 0, []string{"debug:1"}},
		{"excluded by normalised glob", excludePolicy, func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "Pod", "", raw(t, pod("golang:1", "ghcr.io/x/y:1"), "v1", "Pod"), nil)
		}, true, 0, []string{"ghcr.io/x/y:1"}},
		{"opt-in policy selects the labelled namespace", optIn, func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "Pod", "", raw(t, pod("app:1"), "v1", "Pod"), nil)
		}, true, 0, []string{"app:1"}},
		{"policy selecting other namespaces does nothing", optInElsewhere, func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "Pod", "", raw(t, pod("app:1"), "v1", "Pod"), nil)
		}, true, 0, nil},
		{"unknown kind is allowed", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "ConfigMap", "", []byte(`{"apiVersion":"v1","kind":"ConfigMap"}`), nil)
		}, true, 0, nil},
		{"other subresource is allowed", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Update, "", "Pod", "status", []byte(`garbage`), nil)
		}, true, 0, nil},
		{"malformed object", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "Pod", "", []byte(`{"apiVersion":"v1","kind":"Pod","spec":[`), nil)
		}, false, http.StatusBadRequest, nil},
		{"empty object", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "Pod", "", nil, nil)
		}, false, http.StatusBadRequest, nil},
		{"object kind differs from request kind", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "apps", "Deployment", "", raw(t, pod("app:1"), "v1", "Pod"), nil)
		}, false, http.StatusBadRequest, nil},
		{"object of an unregistered kind", clusterWide(), func(t *testing.T) admission.Request {
			return request(admissionv1.Create, "", "Pod", "", []byte(`{"apiVersion":"v1","kind":"Nope"}`), nil)
		}, false, http.StatusBadRequest, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, fi := newHandler(t, c.policy)
			resp := h.Handle(context.Background(), c.req(t))
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, c.allowed, resp.Result)
			}
			if c.code != 0 && (resp.Result == nil || resp.Result.Code != c.code) {
				t.Errorf("result = %+v, want code %d", resp.Result, c.code)
			}
			if diff := cmp.Diff(c.asked, fi.asked()); diff != "" {
				t.Errorf("inspected (-want +got):\n%s", diff)
			}
		})
	}
}

func finding(a policy.Action, rule string) policy.Finding {
	i := 3
	return policy.Finding{Rule: rule, Action: a, Message: "ships the Go SDK",
		Evidence: policy.Evidence{HistoryIndex: &i, Line: "RUN /bin/sh -c go build -o /app ."}, Remedy: "use a multi-stage build"}
}

func judged(policyName string, mode v1alpha1.Mode, img Image, fs ...policy.Finding) judgment {
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}, Spec: v1alpha1.SlimImagePolicySpec{Mode: mode}}
	return judgment{image: img, policy: p, results: []policy.Result{{Image: img.Reference, Findings: fs}}}
}

// Strictest wins: every pair of modes on the same image, in both orders.
func TestDecideStrictestWins(t *testing.T) {
	img := Image{Reference: "golang-app:1", Container: "app", Source: sourceContainer, Path: "spec.containers[0].image"}
	actions := map[v1alpha1.Mode]policy.Action{v1alpha1.ModeEnforce: policy.ActionDeny, v1alpha1.ModeWarn: policy.ActionWarn, v1alpha1.ModeAudit: policy.ActionAudit}
	modes := []v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}
	for _, a := range modes {
		for _, b := range modes {
			t.Run(string(a)+"+"+string(b), func(t *testing.T) {
				out := decide([]judgment{
					judged("first", a, img, finding(actions[a], "toolchain.go")),
					judged("second", b, img, finding(actions[b], "toolchain.go")),
				})
				strictest := max(rank(actions[a]), rank(actions[b]))
				gotDenied := out.denied != ""
				if gotDenied != (strictest == rank(policy.ActionDeny)) {
					t.Errorf("denied = %q with modes %s, %s", out.denied, a, b)
				}
				wantWarnings := 0
				if strictest == rank(policy.ActionWarn) {
					wantWarnings = 1
					if a == b {
						wantWarnings = 2
					}
				}
				if len(out.warnings) != wantWarnings {
					t.Errorf("warnings = %q, want %d", out.warnings, wantWarnings)
				}
				for _, w := range out.warnings {
					if len(w) >= MaxWarning {
						t.Errorf("warning %q is %d bytes", w, len(w))
					}
				}
				// The words are the strictest policy's.
				if gotDenied {
					for _, name := range []string{"first", "second"} {
						m := map[string]v1alpha1.Mode{"first": a, "second": b}[name]
						if has := strings.Contains(out.denied, "["+name+"]"); has != (m == v1alpha1.ModeEnforce) {
							t.Errorf("message %q names %s = %v", out.denied, name, has)
						}
					}
				}
				ds := out.decisions(&Workload{Object: &corev1.Pod{}}, standing{})
				if len(ds) != 2 {
					t.Fatalf("decisions = %d, want 2", len(ds))
				}
				for _, d := range ds {
					want := map[v1alpha1.Mode]string{v1alpha1.ModeEnforce: "ImageRejected", v1alpha1.ModeWarn: "ImageWarned", v1alpha1.ModeAudit: "ImageAudited"}[d.Policy.Spec.Mode]
					if d.Reason != want {
						t.Errorf("policy %s: reason %q, want %q", d.Policy.Name, d.Reason, want)
					}
				}
			})
		}
	}
}

func TestDenialMessage(t *testing.T) {
	img := Image{Reference: "golang-app:1", Container: "app", Source: sourceContainer, Path: "spec.containers[0].image"}
	out := decide([]judgment{judged("no-sdk", v1alpha1.ModeEnforce, img, finding(policy.ActionDeny, "toolchain.go"))})
	want := `slimgate refused this request:
[no-sdk] container "app" image golang-app:1 (spec.containers[0].image): ships the Go SDK [toolchain.go]
  evidence: history #3: RUN /bin/sh -c go build -o /app .
  remedy: use a multi-stage build`
	if diff := cmp.Diff(want, out.denied); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
}

// The bloat attribution leads the denial; Event notes keep the finding
// lines and one remedy, so three findings fit the API's 1 kB note limit.
func TestDenialMessageWithBloatAndBriefNote(t *testing.T) {
	img := Image{Reference: "golang-app:1", Container: "app", Source: sourceContainer, Path: "spec.containers[0].image"}
	j := judged("no-sdk", v1alpha1.ModeEnforce, img,
		finding(policy.ActionDeny, "toolchain.go"), finding(policy.ActionDeny, "toolchain.cc"), finding(policy.ActionDeny, "build.go"))
	j.results[0].Bloat = &policy.Bloat{ToolchainBytes: 171e6, TotalBytes: 308e6, Percent: 55.5, Known: true}
	out := decide([]judgment{j})
	if want := "slimgate refused this request:\n[no-sdk] container \"app\" image golang-app:1: toolchain layers: 171 MB of 308 MB (56%)\n"; !strings.HasPrefix(out.denied, want) {
		t.Errorf("denial does not lead with the bloat:\n%s", out.denied)
	}
	ds := out.decisions(&Workload{Object: &corev1.Pod{}}, standing{})
	if len(ds) != 1 {
		t.Fatalf("decisions = %d, want 1", len(ds))
	}
	note := ds[0].Note
	for _, rule := range []string{"toolchain layers: 171 MB", "[toolchain.go]", "[toolchain.cc]", "[build.go]", "remedy: use a multi-stage build"} {
		if !strings.Contains(note, rule) {
			t.Errorf("note lacks %q:\n%s", rule, note)
		}
	}
	if n := strings.Count(note, "remedy:"); n != 1 {
		t.Errorf("note has %d remedies, want 1:\n%s", n, note)
	}
	if strings.Contains(note, "evidence:") {
		t.Errorf("note carries evidence lines:\n%s", note)
	}
	// Unknown attribution (history not paired with layers) adds no line.
	j.results[0].Bloat = &policy.Bloat{TotalBytes: 308e6}
	if out := decide([]judgment{j}); strings.Contains(out.denied, "toolchain layers") {
		t.Errorf("unknown bloat was reported:\n%s", out.denied)
	}
}

func TestWarning(t *testing.T) {
	img := Image{Reference: "golang-app:1", Container: "app", Source: sourceContainer}
	got := Warning("policy", img, policy.Finding{Rule: "toolchain.go", Message: "ships the Go SDK"})
	if want := `[policy] container "app": golang-app:1 ships the Go SDK (toolchain.go)`; got != want {
		t.Errorf("Warning = %q, want %q", got, want)
	}
	long := Warning("policy", Image{Reference: strings.Repeat("r", 200), Container: "app"}, policy.Finding{Rule: "x"})
	if len(long) >= MaxWarning {
		t.Errorf("long warning is %d bytes", len(long))
	}
	// A long reference gives up its bytes first: the finding stays.
	long = Warning("policy", Image{Reference: strings.Repeat("r", 8<<10), Container: "app"}, policy.Finding{Rule: "toolchain.go", Message: "ships the Go SDK"})
	if len(long) >= MaxWarning || !strings.HasSuffix(long, "ships the Go SDK (toolchain.go)") {
		t.Errorf("warning for a long reference = %q (%d bytes)", long, len(long))
	}
}

func TestBudget(t *testing.T) {
	b := Budget{}
	cases := map[string]string{"10s": "9s", "": "9s", "30s": "29s", "1s": "500ms", "junk": "9s"}
	for q, want := range cases {
		if got := b.For(q).String(); got != want {
			t.Errorf("For(%q) = %s, want %s", q, got, want)
		}
	}
}

// Two hundred Pods naming the same uncached image arrive at once: the
// registry sees one manifest and one config fetch, and every review is
// answered. The registry answers every request after 50 ms so that the
// reviews overlap the one fetch rather than finding it cached.
func TestFanInFetchesOnce(t *testing.T) {
	const reviews = 200
	reg := newBenchRegistry(t, 50*time.Millisecond)
	ref := reg.push(t, "shared/app:1.0", fixtureImage(t, "nginx-1.17.0.json", "fan-in"))
	h, _ := benchHandler(t, benchReader(t, benchPolicy(reg.Host), false), 0)
	srv := serving(h, true)
	bodies := make([][]byte, reviews)
	for i := range bodies {
		bodies[i] = podReview(t, fmt.Sprintf("app-%d", i), []string{ref})
	}
	start := time.Now()
	answers := make([]*httptest.ResponseRecorder, reviews)
	var wg sync.WaitGroup
	for i := range reviews {
		wg.Go(func() { answers[i] = serve(srv, bodies[i]) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	allowed := 0
	for i, w := range answers {
		if answeredAllowed(w) {
			allowed++
		} else if allowed+i < 3 {
			t.Errorf("review %d: status %d: %s", i, w.Code, w.Body.String())
		}
	}
	if allowed != reviews {
		t.Errorf("%d of %d reviews allowed", allowed, reviews)
	}
	// One image under one policy: one evaluation, shared by every review
	// that needed it while it ran.
	if n := h.evaluated.Load(); n != 1 {
		t.Errorf("%d concurrent reviews ran %d evaluations of one image, want 1", reviews, n)
	}
	counts, total := reg.snapshot()
	want := map[string]int{"ping": 1, "manifest GET": 1, "blob GET": 1}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("registry requests for %d concurrent reviews (-want +got):\n%s", reviews, diff)
	}
	t.Logf("FIGURE fan-in: %d concurrent reviews of one uncached image: %d allowed in %v; registry requests %v (total %d)",
		reviews, allowed, elapsed.Round(time.Millisecond), counts, total)
}

// DecodeAs reads what the handler judges exactly as the full decode does,
// for every kind, and falls back to the full decode when the object is not
// of the kind asked for.
func TestDecodeAsMatchesDecode(t *testing.T) {
	ctrl := true
	meta := metav1.ObjectMeta{Name: "x", GenerateName: "x-", Namespace: "team", UID: "u-1", Labels: map[string]string{"app": "x"},
		Annotations:     map[string]string{"note": "not read"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "x-1", UID: "u-0", Controller: &ctrl}}}
	spec := podSpec()
	spec.ServiceAccountName = "builder"
	spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	tmpl := corev1.PodTemplateSpec{Spec: spec}
	cases := []struct {
		obj        runtime.Object
		apiVersion string
		kind       string
	}{
		{&corev1.Pod{ObjectMeta: meta, Spec: spec}, "v1", "Pod"},
		{&corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Template: &tmpl}}, "v1", "ReplicationController"},
		{&corev1.ReplicationController{ObjectMeta: meta}, "v1", "ReplicationController"},
		{&appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}}, "apps/v1", "Deployment"},
		{&appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, "apps/v1", "ReplicaSet"},
		{&appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}}, "apps/v1", "StatefulSet"},
		{&appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}}, "apps/v1", "DaemonSet"},
		{&batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}}, "batch/v1", "Job"},
		{&batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}, "batch/v1", "CronJob"},
	}
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Kind                          schema.GroupVersionKind
		Name, GenerateName, Namespace string
		UID                           k8stypes.UID
		Labels                        map[string]string
		Owners                        []metav1.OwnerReference
		Images                        []Image
		ServiceAccount                string
		PullSecrets                   []corev1.LocalObjectReference
	}
	viewOf := func(w *Workload) view {
		v := view{Kind: w.Kind, Name: w.Object.GetName(), GenerateName: w.Object.GetGenerateName(), Namespace: w.Object.GetNamespace(),
			UID: w.Object.GetUID(), Labels: w.Object.GetLabels(), Owners: w.Object.GetOwnerReferences(), Images: Images(w.Spec, w.Path)}
		if w.Spec != nil {
			v.ServiceAccount, v.PullSecrets = w.Spec.ServiceAccountName, w.Spec.ImagePullSecrets
		}
		return v
	}
	for _, c := range cases {
		b := raw(t, c.obj, c.apiVersion, c.kind)
		gvk := schema.FromAPIVersionAndKind(c.apiVersion, c.kind)
		full, err := d.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		slim, err := d.DecodeAs(b, gvk)
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		if diff := cmp.Diff(viewOf(full), viewOf(slim)); diff != "" {
			t.Errorf("%s: DecodeAs differs from Decode (-full +slim):\n%s", c.kind, diff)
		}
	}
	// The request says Deployment, the object is a ReplicaSet: the object's
	// own kind wins.
	rs := raw(t, &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, "apps/v1", "ReplicaSet")
	w, err := d.DecodeAs(rs, appsv1.SchemeGroupVersion.WithKind("Deployment"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Kind.Kind != "ReplicaSet" {
		t.Errorf("decoded as %s, want the object's own kind ReplicaSet", w.Kind)
	}
}

// Each policy is compiled once per generation: reviews reuse the compiled
// form until the object changes; a changed policy takes effect on the next
// review; deleted policies leave the set.
func TestPoliciesCompiledOncePerGeneration(t *testing.T) {
	ctx := context.Background()
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	all := clusterWide()
	// The API server stores what the CRD admits; the globs of other
	// dialects and unknown rules are only reported by the status.
	invalid := clusterWide()
	invalid.Name = "invalid"
	invalid.Spec.Toolchains.Deny = []string{"toolchain.go", "toolchain.[gr]o"}
	invalid.Spec.Exclude.Images = []string{"[gr]hcr.io/*"}
	cl := fake.NewClientBuilder().WithScheme(s).WithObjects(all, invalid,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}).Build()
	fi := &fakeInspector{}
	h, err := NewHandler(Options{Reader: cl, Inspector: fi})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(img string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: img}}}}
		if resp := h.Handle(ctx, request(admissionv1.Create, "", "Pod", "", raw(t, p, "v1", "Pod"), nil)); !resp.Allowed {
			t.Fatalf("%s denied: %v", img, resp.Result)
		}
	}
	compiled := func(name string) *compiledPolicy {
		l := h.policies.latest.Load()
		if l == nil {
			return nil
		}
		return l.byName[name]
	}

	admit("app:1")
	first := compiled("all")
	if first == nil || compiled("invalid") == nil {
		t.Fatal("the policies were not compiled")
	}
	admit("ghcr.io/org/app:2")
	if compiled("all") != first {
		t.Error("an unchanged policy was compiled again")
	}
	if diff := cmp.Diff([]string{"app:1", "ghcr.io/org/app:2"}, fi.asked()); diff != "" {
		t.Errorf("inspected (-want +got):\n%s", diff)
	}

	if err := cl.Get(ctx, client.ObjectKeyFromObject(all), all); err != nil {
		t.Fatal(err)
	}
	all.Spec.Exclude.Images = []string{"app:*"}
	if err := cl.Update(ctx, all); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(ctx, invalid); err != nil {
		t.Fatal(err)
	}
	admit("app:3")
	if compiled("all") == first {
		t.Error("a changed policy was not compiled again")
	}
	if compiled("invalid") != nil {
		t.Error("a deleted policy stayed in the set")
	}
	if diff := cmp.Diff([]string{"app:1", "ghcr.io/org/app:2"}, fi.asked()); diff != "" {
		t.Errorf("the new exclusion was not applied (-want +got):\n%s", diff)
	}

	if err := cl.Delete(ctx, all); err != nil {
		t.Fatal(err)
	}
	admit("app:4")
	if l := h.policies.latest.Load(); len(l.sorted) != 0 || len(l.byName) != 0 {
		t.Errorf("no policy is left, the set holds %d", len(l.byName))
	}
}
