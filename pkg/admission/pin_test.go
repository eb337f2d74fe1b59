package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/internal/devcluster"
)

// judgeOnce posts one review to srv and reports whether it was allowed.
func judgeOnce(t *testing.T, srv http.Handler, body []byte) bool {
	t.Helper()
	w := serve(srv, body)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	return answeredAllowed(w)
}

// A tag moved to another image after a Pod was admitted: the next Pod
// CREATE naming it is judged on what the tag names now, not on the digest
// the tag cache remembers for minutes, at the cost of one manifest HEAD;
// the facts of a digest already seen are reused. Workload kinds keep the
// tag cache: a Deployment naming the tag costs no request.
func TestPodCreateRechecksTheTag(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	ref := reg.push(t, "team/app:T", fixtureImage(t, "distroless-static-debian12.json", "slim"))
	h, _ := benchHandler(t, benchReader(t, benchPolicy(reg.Host), false), 0)
	srv := serving(h, true)
	if !judgeOnce(t, srv, podReview(t, "first", []string{ref})) {
		t.Fatal("the slim image was denied")
	}
	// The same Pod again: the tag is checked with a HEAD, the facts of its
	// digest come from the cache.
	reg.Reset()
	if !judgeOnce(t, srv, podReview(t, "second", []string{ref})) {
		t.Fatal("the slim image was denied the second time")
	}
	if diff := cmp.Diff(map[string]int{"manifest HEAD": 1}, mustSnapshot(reg)); diff != "" {
		t.Errorf("requests of a Pod CREATE naming a cached tag (-want +got):\n%s", diff)
	}

	reg.push(t, "team/app:T", fixtureImage(t, "golang-1.24.4-bookworm.json", "fat"))
	reg.Reset()
	if !judgeOnce(t, srv, deploymentReview(t, []string{ref})) {
		t.Error("a Deployment naming the tag was judged anew; workloads keep the tag cache")
	}
	if got := mustSnapshot(reg); len(got) != 0 {
		t.Errorf("a Deployment naming a cached tag made requests: %v", got)
	}
	if judgeOnce(t, srv, podReview(t, "third", []string{ref})) {
		t.Error("a Pod naming the moved tag was admitted on the digest the tag named before")
	}
}

func mustSnapshot(reg *benchRegistry) map[string]int {
	counts, _ := reg.snapshot()
	return counts
}

// spec.requireDigests denies a Pod naming a tag, with the rule and its
// remedy in the message, and admits the same image named by digest.
func TestRequireDigestsDeniesTags(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	img := fixtureImage(t, "distroless-static-debian12.json", "pinned")
	ref := reg.push(t, "team/app:1", img)
	digest := digestOf(t, img)
	p := benchPolicy(reg.Host)
	p.Spec.RequireDigests = true
	h, _ := benchHandler(t, benchReader(t, p, false), 0)
	srv := serving(h, true)
	w := serve(srv, podReview(t, "tagged", []string{ref}))
	for _, want := range []string{`"allowed":false`, "reference.digest", "webhook.pinDigests"} {
		if !bytes.Contains(w.Body.Bytes(), []byte(want)) {
			t.Errorf("a Pod naming a tag: answer lacks %s: %s", want, w.Body.String())
		}
	}
	for _, pinned := range []string{ref + "@" + digest, reg.Host + "/team/app@" + digest} {
		if !judgeOnce(t, srv, podReview(t, "pinned", []string{pinned})) {
			t.Errorf("%s denied", pinned)
		}
	}
}

// patchOp is a JSON patch operation as the API server reads it.
type patchOp struct{ Op, Path, Value string }

// pin runs the Pinner on a review of obj (a Pod in namespace "team") and
// returns its patch operations and obj with them applied, as the API
// server would.
func pin(t *testing.T, p *Pinner, op admissionv1.Operation, sub string, obj, old *corev1.Pod) ([]patchOp, *corev1.Pod) {
	t.Helper()
	body := raw(t, obj, "v1", "Pod")
	var oldBody []byte
	if old != nil {
		oldBody = raw(t, old, "v1", "Pod")
	}
	resp := p.Handle(context.Background(), request(op, "", "Pod", sub, body, oldBody))
	if !resp.Allowed {
		t.Fatalf("the Pinner refused: %+v", resp.Result)
	}
	if err := resp.Complete(admission.Request{}); err != nil {
		t.Fatal(err)
	}
	if len(resp.Patches) == 0 {
		if resp.PatchType != nil || len(resp.Patch) > 0 {
			t.Errorf("no operations, but a patch %s", resp.Patch)
		}
		return nil, obj
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
	}
	var ops []patchOp
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch5.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(body)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\n%s", err, resp.Patch)
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(patched, out); err != nil {
		t.Fatal(err)
	}
	return ops, out
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// The Pinner appends the digest each tag names to every kind of image of
// a created Pod (init containers, containers, image volumes), and leaves
// alone a reference that carries a digest, an image no policy judges and a
// tag it cannot resolve (the validating webhook decides on those).
func TestPinnerPinsEveryImageOfAPod(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	images := map[string]v1.Image{}
	refs := map[string]string{}
	for _, n := range []string{"init", "app", "vol", "excluded"} {
		images[n] = fixtureImage(t, "distroless-static-debian12.json", n)
		refs[n] = reg.push(t, "team/"+n+":1", images[n])
	}
	pinned := reg.Host + "/team/app:1@" + digestOf(t, images["app"])
	missing := reg.Host + "/team/missing:1"
	pol := benchPolicy(reg.Host)
	pol.Spec.Exclude.Images = []string{refs["excluded"]}
	h, _ := benchHandler(t, benchReader(t, pol, false), 0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: refs["init"]}},
			Containers: []corev1.Container{{Name: "app", Image: refs["app"]}, {Name: "pinned", Image: pinned},
				{Name: "missing", Image: missing}, {Name: "excluded", Image: refs["excluded"]}},
			Volumes: []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: refs["vol"]}}},
			},
		},
	}
	ops, got := pin(t, NewPinner(h), admissionv1.Create, "", pod, nil)
	want := []patchOp{
		{"replace", "/spec/initContainers/0/image", refs["init"] + "@" + digestOf(t, images["init"])},
		{"replace", "/spec/containers/0/image", refs["app"] + "@" + digestOf(t, images["app"])},
		{"replace", "/spec/volumes/1/image/reference", refs["vol"] + "@" + digestOf(t, images["vol"])},
	}
	if diff := cmp.Diff(want, ops, cmpopts.SortSlices(func(a, b patchOp) bool { return a.Path < b.Path })); diff != "" {
		t.Errorf("patch (-want +got):\n%s", diff)
	}
	wantPod := pod.DeepCopy()
	wantPod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	wantPod.Spec.InitContainers[0].Image = want[0].Value
	wantPod.Spec.Containers[0].Image = want[1].Value
	wantPod.Spec.Volumes[1].Image.Reference = want[2].Value
	if diff := cmp.Diff(wantPod, got); diff != "" {
		t.Errorf("patched Pod (-want +got):\n%s", diff)
	}
}

// On the ephemeralcontainers subresource only the ephemeral containers the
// request adds are pinned (the others cannot change), and only when a
// policy judges ephemeral containers (by default none does).
func TestPinnerEphemeralContainers(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	debug := fixtureImage(t, "distroless-static-debian12.json", "debug")
	ref := reg.push(t, "team/debug:1", debug)
	old := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: corev1.PodSpec{
			Containers:          []corev1.Container{{Name: "app", Image: ref}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug-1", Image: ref}}},
		},
	}
	cur := old.DeepCopy()
	cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers,
		corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug-2", Image: ref}})

	judging := benchPolicy(reg.Host)
	judging.Spec.Exclude.EphemeralContainers = new(bool)
	h, _ := benchHandler(t, benchReader(t, judging, false), 0)
	ops, _ := pin(t, NewPinner(h), admissionv1.Update, "ephemeralcontainers", cur, old)
	want := []patchOp{{"replace", "/spec/ephemeralContainers/1/image", ref + "@" + digestOf(t, debug)}}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("patch (-want +got):\n%s", diff)
	}

	h, _ = benchHandler(t, benchReader(t, benchPolicy(reg.Host), false), 0)
	if ops, _ := pin(t, NewPinner(h), admissionv1.Update, "ephemeralcontainers", cur, old); len(ops) != 0 {
		t.Errorf("ephemeral containers excluded by the policy, yet pinned: %v", ops)
	}
}

// Workloads (their templates stay as written), Pod UPDATEs and other
// subresources are never patched, and make no registry request.
func TestPinnerLeavesWorkloadsAndUpdatesAlone(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	ref := reg.push(t, "team/app:1", fixtureImage(t, "distroless-static-debian12.json", "alone"))
	h, _ := benchHandler(t, benchReader(t, benchPolicy(reg.Host), false), 0)
	p := NewPinner(h)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: ref}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: pod.Spec}}}
	podRaw, depRaw := raw(t, pod, "v1", "Pod"), raw(t, dep, "apps/v1", "Deployment")
	for name, req := range map[string]admission.Request{
		"Deployment CREATE": request(admissionv1.Create, "apps", "Deployment", "", depRaw, nil),
		"Pod UPDATE":        request(admissionv1.Update, "", "Pod", "", podRaw, podRaw),
		"pods/status":       request(admissionv1.Update, "", "Pod", "status", podRaw, podRaw),
	} {
		resp := p.Handle(context.Background(), req)
		if !resp.Allowed || len(resp.Patches) != 0 {
			t.Errorf("%s: allowed %v, patches %v", name, resp.Allowed, resp.Patches)
		}
	}
	if got := mustSnapshot(reg); len(got) != 0 {
		t.Errorf("requests made: %v", got)
	}
}

// The digest pinned is the digest judged: the validating review of the
// pinned Pod judges it (reading no manifest or config again: one HEAD by
// digest proves the Pod's access) even after the tag moved to a fat
// image, and a Pod created after the move is pinned to the fat image's
// digest, tag resolved anew, and denied.
func TestPinnedDigestIsTheJudgedOne(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	slim := fixtureImage(t, "distroless-static-debian12.json", "slim")
	ref := reg.push(t, "team/app:T", slim)
	h, _ := benchHandler(t, benchReader(t, benchPolicy(reg.Host), false), 0)
	p, srv := NewPinner(h), serving(h, true)
	newPod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c0", Image: ref}}}}
	}

	_, first := pin(t, p, admissionv1.Create, "", newPod("first"), nil)
	if got, want := first.Spec.Containers[0].Image, ref+"@"+digestOf(t, slim); got != want {
		t.Fatalf("pinned %s, want %s", got, want)
	}
	fat := fixtureImage(t, "golang-1.24.4-bookworm.json", "fat")
	reg.push(t, "team/app:T", fat)
	reg.Reset()
	if !judgeOnce(t, srv, podReview(t, "first", []string{first.Spec.Containers[0].Image})) {
		t.Error("the Pod pinned to the slim digest was denied after the tag moved")
	}
	if diff := cmp.Diff(map[string]int{"manifest HEAD": 1}, mustSnapshot(reg)); diff != "" {
		t.Errorf("requests of the validating review of a pinned Pod (-want +got):\n%s", diff)
	}

	_, second := pin(t, p, admissionv1.Create, "", newPod("second"), nil)
	if got, want := second.Spec.Containers[0].Image, ref+"@"+digestOf(t, fat); got != want {
		t.Fatalf("after the move pinned %s, want %s", got, want)
	}
	if judgeOnce(t, srv, podReview(t, "second", []string{second.Spec.Containers[0].Image})) {
		t.Error("the Pod pinned to the fat digest was admitted")
	}
}

// An image one policy excludes by naming its tag exactly, and another
// judges, stays as written: pinned, the first policy's glob would no
// longer match and that policy would judge what it means to leave alone.
// A glob that matches the pinned reference too lets it be pinned.
func TestPinnerKeepsExclusions(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	img := fixtureImage(t, "distroless-static-debian12.json", "excl")
	ref := reg.push(t, "team/app:1", img)
	for _, c := range []struct {
		glob   string
		pinned bool
	}{
		{ref, false},
		{reg.Host + "/team/*", true},
	} {
		judging := benchPolicy(reg.Host)
		judging.Name = "a-judges"
		excluding := benchPolicy(reg.Host)
		excluding.Name = "b-excludes"
		excluding.Spec.Exclude.Images = []string{c.glob}
		rd := benchReader(t, judging, false).(*cacheReader)
		second := excluding.DeepCopy()
		second.UID, second.ResourceVersion = "5d1f0b8e-7c55-4c1b-8c5e-0e6a51c6e7a2", "4712"
		rd.policies = append(rd.policies, *second)
		h, _ := benchHandler(t, rd, 0)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: ref}}}}
		ops, _ := pin(t, NewPinner(h), admissionv1.Create, "", pod, nil)
		if got := len(ops) == 1; got != c.pinned {
			t.Errorf("exclude %q: patch %v, want pinned %v", c.glob, ops, c.pinned)
		}
	}
}

// A Pod naming many distinct tags on a registry that never answers: the
// Pinner answers before the review's deadline, starts at most maxPins
// fetches, pins nothing, and leaves no goroutine behind.
func TestPinnerBoundedOnAHangingRegistry(t *testing.T) {
	const tags = 300
	srv, host, requests := hangingRegistry(t)
	base := runtime.NumGoroutine()

	// Concurrency above the tag count: only maxPins bounds the fetches.
	h, remote := benchHandler(t, benchReader(t, benchPolicy(host), false), 2*tags)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "wide", Namespace: "team"}}
	for i := range tags {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fmt.Sprintf("%s/repo%d/app:1", host, i)})
	}
	const budget = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	resp := NewPinner(h).Handle(ctx, request(admissionv1.Create, "", "Pod", "", raw(t, pod, "v1", "Pod"), nil))
	took := time.Since(start)
	if took > budget+500*time.Millisecond {
		t.Errorf("answered after %v, budget %v", took, budget)
	}
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("allowed %v with %d patches, want allowed without", resp.Allowed, len(resp.Patches))
	}
	if n := requests.Load(); n > maxPins {
		t.Errorf("%d requests to the registry for %d tags, want at most %d", n, tags, maxPins)
	}
	remote.Close()
	srv.CloseClientConnections()
	if err := devcluster.WaitGoroutines(base+2, 5*time.Second); err != nil {
		t.Error(err)
	}
}
