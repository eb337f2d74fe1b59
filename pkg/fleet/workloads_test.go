package fleet

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func objMeta(name string, owner client.Object) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name)}
	if owner != nil {
		yes := true
		m.OwnerReferences = []metav1.OwnerReference{{Name: owner.GetName(), UID: owner.GetUID(), Controller: &yes}}
	}
	return m
}

func template(images ...string) corev1.PodTemplateSpec {
	var cs []corev1.Container
	for i, img := range images {
		cs = append(cs, corev1.Container{Name: string(rune('a' + i)), Image: img})
	}
	return corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: cs}}
}

func pod(name string, owner client.Object, images ...string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: objMeta(name, owner), Spec: template(images...).Spec}
}

// TestGroupFoldsOwnedObjectsIntoTheirController: every judged object is
// reported once, under the judged controller at the top of its owners.
func TestGroupFoldsOwnedObjectsIntoTheirController(t *testing.T) {
	deploy := &appsv1.Deployment{ObjectMeta: objMeta("web", nil), Spec: appsv1.DeploymentSpec{Template: template("web:1")}}
	rs := &appsv1.ReplicaSet{ObjectMeta: objMeta("web-1", deploy), Spec: appsv1.ReplicaSetSpec{Template: template("web:1")}}
	oldRS := &appsv1.ReplicaSet{ObjectMeta: objMeta("web-0", deploy), Spec: appsv1.ReplicaSetSpec{Template: template("web:0")}}
	cron := &batchv1.CronJob{ObjectMeta: objMeta("nightly", nil)}
	job := &batchv1.Job{ObjectMeta: objMeta("nightly-1", cron)}
	bareRS := &appsv1.ReplicaSet{ObjectMeta: objMeta("lonely", nil)}
	sts := &appsv1.StatefulSet{ObjectMeta: objMeta("db", nil)}
	rc := &corev1.ReplicationController{ObjectMeta: objMeta("legacy", nil)}
	// An owner of a kind slimgate does not judge (an operator's resource)
	// is not in the list: its Pod is a workload of its own.
	operated := pod("operated", &appsv1.Deployment{ObjectMeta: objMeta("not-listed", nil)}, "op:1")
	objs := []client.Object{
		pod("web-1-a", rs, "web:1"), pod("web-1-b", rs, "web:1"), pod("web-0-a", oldRS, "web:0"),
		deploy, rs, oldRS, cron, job, pod("nightly-1-x", job, "batch:1"), bareRS, pod("lonely-a", bareRS, "x:1"),
		sts, pod("db-0", sts, "db:1"), rc, pod("legacy-a", rc, "legacy:1"), pod("bare", nil, "bare:1"), operated,
		// A second copy of an object (two lists overlapping) is one workload.
		pod("bare", nil, "bare:1"),
	}
	type got struct {
		Kind, Name string
		Pods       []string
	}
	var have []got
	for _, w := range Group(objs) {
		g := got{Kind: w.Kind.Kind, Name: w.Object.GetName()}
		for _, p := range w.Pods {
			g.Pods = append(g.Pods, p.Name)
		}
		have = append(have, g)
	}
	want := []got{
		{"CronJob", "nightly", []string{"nightly-1-x"}},
		{"Deployment", "web", []string{"web-1-a", "web-1-b", "web-0-a"}},
		{"Pod", "bare", []string{"bare"}},
		{"Pod", "operated", []string{"operated"}},
		{"ReplicaSet", "lonely", []string{"lonely-a"}},
		{"ReplicationController", "legacy", []string{"legacy-a"}},
		{"StatefulSet", "db", []string{"db-0"}},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("workloads (-want +got):\n%s", diff)
	}
}

// TestGroupSurvivesOwnerCycles: objects that own each other (written by
// hand, never by a controller) end the walk instead of looping.
func TestGroupSurvivesOwnerCycles(t *testing.T) {
	a := &appsv1.ReplicaSet{ObjectMeta: objMeta("a", nil)}
	b := &appsv1.ReplicaSet{ObjectMeta: objMeta("b", a)}
	yes := true
	a.OwnerReferences = []metav1.OwnerReference{{Name: "b", UID: b.UID, Controller: &yes}}
	ws := Group([]client.Object{a, b})
	if n := len(ws); n == 0 || n > 2 {
		t.Fatalf("%d workloads from a cycle of two, want 1 or 2", n)
	}
}

func TestTargets(t *testing.T) {
	deploy := &appsv1.Deployment{ObjectMeta: objMeta("web", nil), Spec: appsv1.DeploymentSpec{Template: template("web:1", "sidecar:2")}}
	deploy.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "init:1"}}
	running := func(name string, statuses ...corev1.ContainerStatus) *corev1.Pod {
		p := pod(name, deploy, "web:1", "sidecar:2")
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "init:1"}}
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
		p.Status.ContainerStatuses = statuses
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", ImageID: "docker.io/library/init@" + digestA}}
		p.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "debug", ImageID: "docker-pullable://busybox@" + digestB}}
		return p
	}
	w := Workload{Object: deploy, Spec: &deploy.Spec.Template.Spec, Path: "spec.template.spec", Pods: []*corev1.Pod{
		running("web-a", corev1.ContainerStatus{Name: "a", ImageID: "docker.io/library/web@" + digestA},
			// A bare image ID (an image built on the node) names no
			// registry digest: the spec's reference is judged.
			corev1.ContainerStatus{Name: "b", ImageID: digestB}),
		// The tag moved: this Pod runs another digest of web:1.
		running("web-b", corev1.ContainerStatus{Name: "a", ImageID: "docker.io/library/web@" + digestB}),
		running("web-c", corev1.ContainerStatus{Name: "a", ImageID: "docker.io/library/web@" + digestA}),
	}}
	type got struct{ Source, Container, Reference, Written, From string }
	var have []got
	for _, tg := range Targets(&w) {
		have = append(have, got{string(tg.Source), tg.Container, tg.Reference, tg.Written, string(tg.From)})
	}
	want := []got{
		{"initContainer", "init", "init:1@" + digestA, "init:1", "running"},
		{"container", "a", "web:1@" + digestA, "web:1", "running"},
		{"container", "b", "sidecar:2", "sidecar:2", "spec"},
		{"ephemeralContainer", "debug", "busybox@" + digestB, "busybox", "running"},
		{"container", "a", "web:1@" + digestB, "web:1", "running"},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("targets (-want +got):\n%s", diff)
	}

	// Scaled to zero: the template's references as written.
	w.Pods = nil
	have = nil
	for _, tg := range Targets(&w) {
		have = append(have, got{string(tg.Source), tg.Container, tg.Reference, tg.Written, string(tg.From)})
	}
	want = []got{
		{"initContainer", "init", "init:1", "init:1", "spec"},
		{"container", "a", "web:1", "web:1", "spec"},
		{"container", "b", "sidecar:2", "sidecar:2", "spec"},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("targets of a workload without Pods (-want +got):\n%s", diff)
	}
}

func TestPinned(t *testing.T) {
	for _, tc := range []struct{ ref, imageID, want string }{
		{"nginx:1.27", "docker.io/library/nginx@" + digestA, "nginx:1.27@" + digestA},
		{"nginx", "docker-pullable://nginx@" + digestA, "nginx@" + digestA},
		{"nginx:1.27@" + digestB, "docker.io/library/nginx@" + digestA, "nginx:1.27@" + digestA},
		{"nginx@" + digestA, "docker.io/library/nginx@" + digestA, "nginx@" + digestA},
		// A mirror the runtime pulled from: its repository is what runs.
		{"nginx:1.27", "mirror.example/library/nginx@" + digestA, "mirror.example/library/nginx@" + digestA},
		{"nginx:1.27", digestA, ""},
		{"nginx:1.27", "", ""},
		{"nginx:1.27", "docker.io/library/nginx@sha256:short", ""},
	} {
		if got := pinned(tc.ref, tc.imageID); got != tc.want {
			t.Errorf("pinned(%q, %q) = %q, want %q", tc.ref, tc.imageID, got, tc.want)
		}
	}
}

// TestInterleave: the scan takes workloads round-robin across registries,
// each registry's in order.
func TestInterleave(t *testing.T) {
	got := interleave([]string{"a", "a", "a", "b", "b", "c", "a"})
	want := []int{0, 3, 5, 1, 4, 2, 6}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("order (-want +got):\n%s", diff)
	}
}
