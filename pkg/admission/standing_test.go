package admission

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/registry"
)

const replicaSetController = "system:serviceaccount:kube-system:replicaset-controller"

// fatInspector answers every reference with an image that installs a C
// compiler, which every policy finds, unless the reference says "slim".
func fatInspector() inspectFunc {
	return func(_ context.Context, r registry.Request) (*registry.Inspection, error) {
		facts := &image.Facts{Reference: r.Reference, History: []image.HistoryEntry{{CreatedBy: "RUN /bin/sh -c apt-get install -y gcc", Layer: image.NoLayer}}}
		if strings.Contains(r.Reference, "slim") {
			facts.History = nil
		}
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{facts}}, nil
	}
}

// controllerOf makes obj controlled by owner (of apiVersion and kind).
func controllerOf(obj, owner metav1.Object, apiVersion, kind string) {
	yes := true
	obj.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: &yes}})
}

// webObjects are Deployment "web" and its ReplicaSet "web-5d4f8", whose
// template runs app:1 (with init container init:1), live in namespace
// team, and a Pod the ReplicaSet controller would make of it.
func webObjects() (*appsv1.Deployment, *appsv1.ReplicaSet, *corev1.Pod) {
	spec := corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "init:1"}},
		Containers:     []corev1.Container{{Name: "app", Image: "app:1"}},
	}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", UID: "dep-uid"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web-5d4f8", UID: "rs-uid"},
		Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
	controllerOf(rs, dep, "apps/v1", "Deployment")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", GenerateName: "web-5d4f8-"}, Spec: *spec.DeepCopy()}
	controllerOf(pod, rs, "apps/v1", "ReplicaSet")
	return dep, rs, pod
}

// asUser is a CREATE of obj (of kind in group) by user.
func asUser(t testing.TB, user, group, kind string, obj client.Object) admission.Request {
	t.Helper()
	apiVersion := "v1"
	if group != "" {
		apiVersion = group + "/v1"
	}
	req := request(admissionv1.Create, group, kind, "", raw(t, obj, apiVersion, kind), nil)
	req.UserInfo.Username = user
	return req
}

// The ReplicaSet controller adds a Pod to a Deployment admitted before an
// Enforce policy, with exactly its template's images: the Pod is
// admitted, as the Deployment was (issue 10; today it is denied and the
// Deployment cannot scale).
func TestControllerChildOfAdmittedOwnerIsAdmitted(t *testing.T) {
	dep, rs, pod := webObjects()
	rd := policiesReader(t, clusterWide())
	c := rd.(client.Client)
	for _, o := range []client.Object{dep, rs} {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	rec := &decisions{}
	h := hostileHandler(t, rd, fatInspector(), Options{Recorder: rec})
	resp := h.Handle(context.Background(), asUser(t, replicaSetController, "", "Pod", pod))
	if !resp.Allowed {
		t.Fatalf("the ReplicaSet controller's Pod of an admitted Deployment was denied: %v", resp.Result.Message)
	}
	if len(rec.all) != 1 || rec.all[0].Reason != "ImageGrandfathered" {
		t.Fatalf("decisions %+v, want one ImageGrandfathered", rec.all)
	}
}

// withObjects returns a reader holding the policies, namespace team and
// the objects, as the manager's cache would.
func withObjects(t testing.TB, policies []*v1alpha1.SlimImagePolicy, objs ...client.Object) client.Reader {
	t.Helper()
	schemeOnce.Do(func() { scheme, schemeErr = devcluster.NewScheme() })
	if schemeErr != nil {
		t.Fatal(schemeErr)
	}
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}})
	for _, p := range policies {
		b = b.WithObjects(p)
	}
	for _, o := range objs {
		b = b.WithObjects(o.DeepCopyObject().(client.Object))
	}
	return b.Build()
}

// scheme is built once for the many readers of the tables below.
var (
	schemeOnce sync.Once
	scheme     *runtime.Scheme
	schemeErr  error
)

// keepOrJudge returns a cluster-wide policy in mode with existingWorkloads e.
func keepOrJudge(name string, mode v1alpha1.Mode, e v1alpha1.ExistingWorkloads) *v1alpha1.SlimImagePolicy {
	p := clusterWide()
	p.Name, p.Spec.Mode, p.Spec.ExistingWorkloads = name, mode, e
	return p
}

const pinnedDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// The rule, case by case: who asks, whether the owner the Pod names is
// live with that UID, whether its template has the Pod's images slot by
// slot, under each mode and existingWorkloads. Only a trusted identity,
// a verified owner and the same image in the same slot under Keep make an
// image inherit its owner's standing (admitted, recorded as
// ImageGrandfathered); a slot the template lacks (a sidecar a mutating
// webhook added) is judged on its own, and every other case as before.
// Events regard the verified owner's Deployment, else the Pod itself.
func TestStandingRule(t *testing.T) {
	identities := []struct {
		name    string
		user    string
		trusted bool
	}{
		{"replicaset controller", replicaSetController, true},
		{"controller manager", "system:kube-controller-manager", true},
		{"user", "alice", false},
		{"other kube-system account", "system:serviceaccount:kube-system:builder", false},
	}
	owners := []struct {
		name string
		// set changes the Pod's owner reference; it returns false when the
		// ReplicaSet must not exist.
		set      func(pod *corev1.Pod) bool
		verified bool
	}{
		{"owner live", func(*corev1.Pod) bool { return true }, true},
		{"owner missing", func(*corev1.Pod) bool { return false }, false},
		{"UID mismatch", func(p *corev1.Pod) bool { p.OwnerReferences[0].UID = "forged"; return true }, false},
		{"owner not a Pod controller's kind", func(p *corev1.Pod) bool {
			p.OwnerReferences[0].Kind, p.OwnerReferences[0].Name, p.OwnerReferences[0].UID = "Deployment", "web", "dep-uid"
			return true
		}, false},
		{"owner in another API group", func(p *corev1.Pod) bool { p.OwnerReferences[0].APIVersion = "extensions/v1beta1"; return true }, false},
	}
	images := []struct {
		name  string
		set   func(pod *corev1.Pod)
		equal bool
	}{
		{"same images", func(*corev1.Pod) {}, true},
		{"tag pinned to a digest", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "app:1@" + pinnedDigest }, true},
		{"changed image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "app:2" }, false},
		{"other tag pinned", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "app:2@" + pinnedDigest }, false},
		{"not a digest", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "app:1@sha256:beef" }, false},
		{"images swapped between slots", func(p *corev1.Pod) {
			p.Spec.Containers[0].Image, p.Spec.InitContainers[0].Image = "init:1", "app:1"
		}, false},
		{"renamed container", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "main" }, false},
		{"fat sidecar added", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "app:1"})
		}, false},
		{"slim sidecar added", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "proxy", Image: "slim-proxy:1"})
		}, true},
		{"image volume added", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "init:1"}}})
		}, false},
	}
	modes := []v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}
	wantReason := map[v1alpha1.Mode]string{v1alpha1.ModeEnforce: "ImageRejected", v1alpha1.ModeWarn: "ImageWarned", v1alpha1.ModeAudit: "ImageAudited"}
	// One handler per policy and cache content, shared by the requests.
	type setup struct {
		mode     v1alpha1.Mode
		e        v1alpha1.ExistingWorkloads
		ownerSet bool
	}
	type shared struct {
		h   *Handler
		rec *decisions
	}
	handlers := map[setup]shared{}
	handler := func(t *testing.T, k setup) shared {
		if sh, ok := handlers[k]; ok {
			return sh
		}
		dep, rs, _ := webObjects()
		objs := []client.Object{dep}
		if k.ownerSet {
			objs = append(objs, rs)
		}
		rec := &decisions{}
		h := hostileHandler(t, withObjects(t, []*v1alpha1.SlimImagePolicy{keepOrJudge("p", k.mode, k.e)}, objs...), fatInspector(),
			Options{Recorder: rec, OwnerWait: time.Millisecond})
		handlers[k] = shared{h, rec}
		return handlers[k]
	}
	for _, id := range identities {
		for _, o := range owners {
			for _, img := range images {
				for _, mode := range modes {
					for _, e := range []v1alpha1.ExistingWorkloads{v1alpha1.ExistingWorkloadsKeep, v1alpha1.ExistingWorkloadsJudge} {
						name := id.name + "/" + o.name + "/" + img.name + "/" + string(mode) + "/" + string(e)
						t.Run(name, func(t *testing.T) {
							_, _, pod := webObjects()
							sh := handler(t, setup{mode, e, o.set(pod)})
							img.set(pod)
							rec := sh.rec
							rec.all = nil
							resp := sh.h.Handle(context.Background(), asUser(t, id.user, "", "Pod", pod))

							verified := id.trusted && o.verified
							kept := verified && img.equal && e == v1alpha1.ExistingWorkloadsKeep
							if want := kept || mode != v1alpha1.ModeEnforce; resp.Allowed != want {
								t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, want, resp.Result)
							}
							if kept && len(resp.Warnings) > 0 {
								t.Errorf("warnings %q for a grandfathered Pod", resp.Warnings)
							}
							if len(rec.all) != 1 {
								t.Fatalf("%d decisions, want 1", len(rec.all))
							}
							d := rec.all[0]
							reason, verdict := wantReason[mode], "allow"
							if mode == v1alpha1.ModeEnforce {
								verdict = "deny"
							}
							if kept {
								reason, verdict = "ImageGrandfathered", "grandfathered"
							}
							if d.Reason != reason || d.Verdict != verdict {
								t.Errorf("decision %s/%s, want %s/%s", d.Reason, d.Verdict, reason, verdict)
							}
							want := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "team", Name: "web-5d4f8"}
							if verified {
								want = corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "team", Name: "web", UID: "dep-uid"}
							}
							if got := events.Regarding(d); got != want {
								t.Errorf("event regards %+v, want %+v", got, want)
							}
							if kept && !strings.Contains(d.Note, "ReplicaSet web-5d4f8") {
								t.Errorf("note does not name the owner:\n%s", d.Note)
							}
							for _, n := range d.Images {
								if inherited := strings.HasPrefix(n.Note, "admitted as in the template of ReplicaSet web-5d4f8"); inherited != (n.Reason == "ImageGrandfathered") || (kept && !inherited) {
									t.Errorf("image %s: reason %s, note:\n%s", n.Image, n.Reason, n.Note)
								}
							}
						})
					}
				}
			}
		}
	}
}

// Every pair of a built-in controller's child and the owner it is made
// from: the child inherits, and its Event regards the workload a person
// created (a ReplicaSet's Deployment, a Job's CronJob, else the owner).
// What a controller does not create from a template (an UPDATE, a
// Deployment, the ephemeralcontainers subresource) is judged as before.
func TestStandingWorkloadKinds(t *testing.T) {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}
	tmpl := corev1.PodTemplateSpec{Spec: spec}
	meta := func(name, uid string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID(uid)}
	}
	cron := &batchv1.CronJob{ObjectMeta: meta("nightly", "cron-uid"), Spec: batchv1.CronJobSpec{Schedule: "@daily",
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	job := &batchv1.Job{ObjectMeta: meta("nightly-1", "job-uid"), Spec: batchv1.JobSpec{Template: tmpl}}
	controllerOf(job, cron, "batch/v1", "CronJob")
	dep := &appsv1.Deployment{ObjectMeta: meta("web", "dep-uid"), Spec: appsv1.DeploymentSpec{Template: tmpl}}
	sts := &appsv1.StatefulSet{ObjectMeta: meta("db", "sts-uid"), Spec: appsv1.StatefulSetSpec{Template: tmpl}}
	ds := &appsv1.DaemonSet{ObjectMeta: meta("agent", "ds-uid"), Spec: appsv1.DaemonSetSpec{Template: tmpl}}
	rc := &corev1.ReplicationController{ObjectMeta: meta("legacy", "rc-uid"), Spec: corev1.ReplicationControllerSpec{Template: &tmpl}}
	// A ReplicaSet naming Deployment web by another UID (an older web).
	stale := &appsv1.ReplicaSet{ObjectMeta: meta("web-old", "old-uid"), Spec: appsv1.ReplicaSetSpec{Template: tmpl}}
	controllerOf(stale, &metav1.ObjectMeta{Name: "web", UID: "gone-uid"}, "apps/v1", "Deployment")
	owners := []client.Object{cron, job, dep, sts, ds, rc, stale}

	pod := func(name string, owner metav1.Object, apiVersion, kind string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name}, Spec: spec}
		controllerOf(p, owner, apiVersion, kind)
		return p
	}
	newRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web-7f9c"}, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}
	controllerOf(newRS, dep, "apps/v1", "Deployment")
	newJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "nightly-2"}, Spec: batchv1.JobSpec{Template: tmpl}}
	controllerOf(newJob, cron, "batch/v1", "CronJob")
	ref := func(apiVersion, kind, name, uid string) *corev1.ObjectReference {
		return &corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Namespace: "team", Name: name, UID: types.UID(uid)}
	}
	changed := dep.DeepCopy()
	changed.Spec.Template.Spec.Containers[0].Image = "app:2"
	withDebug := pod("web-x", job, "batch/v1", "Job")
	withDebug.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "app:1"}}}
	noEphemeralExclusion := keepOrJudge("p", v1alpha1.ModeEnforce, v1alpha1.ExistingWorkloadsKeep)
	no := false
	noEphemeralExclusion.Spec.Exclude.EphemeralContainers = &no

	jobOfJob := newJob.DeepCopy()
	controllerOf(jobOfJob, job, "batch/v1", "Job")
	// by is the CREATE of obj by a kube-system controller's account.
	by := func(controller, group, kind string, obj client.Object) func(t *testing.T) admission.Request {
		return func(t *testing.T) admission.Request {
			return asUser(t, "system:serviceaccount:kube-system:"+controller, group, kind, obj)
		}
	}
	cases := []struct {
		name      string
		req       func(t *testing.T) admission.Request
		kept      bool
		regarding *corev1.ObjectReference
	}{
		{"ReplicaSet of a Deployment", by("deployment-controller", "apps", "ReplicaSet", newRS), true, ref("apps/v1", "Deployment", "web", "dep-uid")},
		{"Job of a CronJob", by("cronjob-controller", "batch", "Job", newJob), true, ref("batch/v1", "CronJob", "nightly", "cron-uid")},
		{"Pod of a Job of a CronJob", by("job-controller", "", "Pod", pod("nightly-1-x", job, "batch/v1", "Job")), true, ref("batch/v1", "CronJob", "nightly", "cron-uid")},
		{"Pod of a StatefulSet", by("statefulset-controller", "", "Pod", pod("db-0", sts, "apps/v1", "StatefulSet")), true, ref("apps/v1", "StatefulSet", "db", "sts-uid")},
		{"Pod of a DaemonSet", by("daemon-set-controller", "", "Pod", pod("agent-x", ds, "apps/v1", "DaemonSet")), true, ref("apps/v1", "DaemonSet", "agent", "ds-uid")},
		{"Pod of a ReplicationController", by("replication-controller", "", "Pod", pod("legacy-x", rc, "v1", "ReplicationController")), true, ref("v1", "ReplicationController", "legacy", "rc-uid")},
		{"Pod of a ReplicaSet whose Deployment is another", by("replicaset-controller", "", "Pod", pod("web-old-x", stale, "apps/v1", "ReplicaSet")), true, ref("apps/v1", "ReplicaSet", "web-old", "old-uid")},
		{"Job of a Job", by("job-controller", "batch", "Job", jobOfJob), false, ref("batch/v1", "Job", "nightly-2", "")},
		{"Deployment UPDATE with a changed image", func(t *testing.T) admission.Request {
			req := request(admissionv1.Update, "apps", "Deployment", "", raw(t, changed, "apps/v1", "Deployment"), raw(t, dep, "apps/v1", "Deployment"))
			req.UserInfo.Username = "system:serviceaccount:kube-system:deployment-controller"
			return req
		}, false, ref("apps/v1", "Deployment", "web", "")}, // refused: named without a UID
		{"Pod UPDATE by a controller", func(t *testing.T) admission.Request {
			p := pod("nightly-1-x", job, "batch/v1", "Job")
			old := p.DeepCopy()
			old.Spec.Containers[0].Image = "app:0"
			req := request(admissionv1.Update, "", "Pod", "", raw(t, p, "v1", "Pod"), raw(t, old, "v1", "Pod"))
			req.UserInfo.Username = "system:serviceaccount:kube-system:job-controller"
			return req
		}, false, ref("v1", "Pod", "nightly-1-x", "")},
		{"ephemeral container added by a controller identity", func(t *testing.T) admission.Request {
			req := request(admissionv1.Update, "", "Pod", "ephemeralcontainers", raw(t, withDebug, "v1", "Pod"), raw(t, pod("web-x", job, "batch/v1", "Job"), "v1", "Pod"))
			req.UserInfo.Username = "system:serviceaccount:kube-system:job-controller"
			return req
		}, false, ref("v1", "Pod", "web-x", "")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &decisions{}
			h := hostileHandler(t, withObjects(t, []*v1alpha1.SlimImagePolicy{noEphemeralExclusion}, owners...), fatInspector(),
				Options{Recorder: rec, OwnerWait: time.Millisecond})
			resp := h.Handle(context.Background(), c.req(t))
			if resp.Allowed != c.kept {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, c.kept, resp.Result)
			}
			if len(rec.all) != 1 {
				t.Fatalf("%d decisions", len(rec.all))
			}
			if got := rec.all[0].Reason == "ImageGrandfathered"; got != c.kept {
				t.Errorf("reason %s", rec.all[0].Reason)
			}
			if diff := cmp.Diff(*c.regarding, events.Regarding(rec.all[0])); diff != "" {
				t.Errorf("regarding (-want +got):\n%s", diff)
			}
		})
	}
}

// notYet hides the objects of one kind from a reader until release is
// closed, as an informer cache that has not yet seen a new object.
type notYet struct {
	client.Reader
	hidden  client.Object
	release chan struct{}
	reads   atomic.Int64
	// readAt, when set, receives the time of each read of hidden.
	readAt chan time.Time
}

func (n *notYet) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if reflect.TypeOf(obj) == reflect.TypeOf(n.hidden) {
		n.reads.Add(1)
		if n.readAt != nil {
			n.readAt <- time.Now()
		}
		select {
		case <-n.release:
		default:
			return apierrors.NewNotFound(schema.GroupResource{Resource: "replicasets"}, key.Name)
		}
	}
	return n.Reader.Get(ctx, key, obj, opts...)
}

// The controller creates a Pod right after its ReplicaSet: the review
// waits for the cache to see the owner (within OwnerWait and the review's
// deadline) instead of denying the Pod; an owner that never appears is
// waited for only that long, and the Pod is judged on its own.
func TestStandingWaitsForTheCache(t *testing.T) {
	dep, rs, pod := webObjects()
	policies := []*v1alpha1.SlimImagePolicy{clusterWide()}
	// The owner usually reaches the cache milliseconds after the review
	// started: the first reads come sooner than ownerPoll apart (each
	// timer waits at least its duration, so a fixed 20 ms poll cannot
	// pass), or a rollout's first Pods wait 20 ms for nothing.
	t.Run("first reads come soon", func(t *testing.T) {
		// The first read finds no owner and waits for none (the review
		// has not judged the images yet); the wait starts at the second.
		const reads = 5
		rd := &notYet{Reader: withObjects(t, policies, dep, rs), hidden: &appsv1.ReplicaSet{}, release: make(chan struct{}),
			readAt: make(chan time.Time, 64)}
		h := hostileHandler(t, rd, fatInspector(), Options{})
		times := make(chan []time.Time)
		go func() {
			var at []time.Time
			for when := range rd.readAt {
				if at = append(at, when); len(at) == reads {
					close(rd.release)
				}
			}
			times <- at
		}()
		resp := h.Handle(context.Background(), asUser(t, replicaSetController, "", "Pod", pod))
		close(rd.readAt)
		at := <-times
		if !resp.Allowed {
			t.Fatalf("denied while the cache caught up: %v", resp.Result)
		}
		if len(at) < reads {
			t.Fatalf("%d reads of the owner, want %d", len(at), reads)
		}
		closest := at[2].Sub(at[1])
		for i := 3; i < reads; i++ {
			closest = min(closest, at[i].Sub(at[i-1]))
		}
		// A timer never fires early: with a fixed ownerPoll every gap is
		// at least ownerPoll, however idle the machine.
		if closest >= ownerPoll {
			t.Errorf("the first reads of a missing owner came at least %s apart, want some sooner than %s", closest, ownerPoll)
		}
	})
	t.Run("owner appears", func(t *testing.T) {
		rd := &notYet{Reader: withObjects(t, policies, dep, rs), hidden: &appsv1.ReplicaSet{}, release: make(chan struct{})}
		time.AfterFunc(150*time.Millisecond, func() { close(rd.release) })
		h := hostileHandler(t, rd, fatInspector(), Options{})
		start := time.Now()
		resp := h.Handle(context.Background(), asUser(t, replicaSetController, "", "Pod", pod))
		if !resp.Allowed {
			t.Fatalf("denied while the cache caught up: %v", resp.Result)
		}
		if took := time.Since(start); took < 150*time.Millisecond || took > DefaultOwnerWait {
			t.Errorf("answered after %s, want after the owner appeared (150ms) and before %s", took, DefaultOwnerWait)
		}
		if n := rd.reads.Load(); n > int64(DefaultOwnerWait/ownerPoll)+8 {
			t.Errorf("%d cache reads while waiting", n)
		}
	})
	for _, c := range []struct {
		name     string
		wait     time.Duration
		deadline time.Duration
	}{
		{"bounded by OwnerWait", 300 * time.Millisecond, time.Minute},
		{"bounded by the review's deadline", time.Minute, 300 * time.Millisecond},
	} {
		t.Run("owner never appears, "+c.name, func(t *testing.T) {
			rd := &notYet{Reader: withObjects(t, policies, dep, rs), hidden: &appsv1.ReplicaSet{}, release: make(chan struct{})}
			h := hostileHandler(t, rd, fatInspector(), Options{OwnerWait: c.wait})
			ctx, cancel := context.WithTimeout(context.Background(), c.deadline)
			defer cancel()
			start := time.Now()
			resp := h.Handle(ctx, asUser(t, replicaSetController, "", "Pod", pod))
			if resp.Allowed {
				t.Fatal("admitted without a verified owner")
			}
			if took := time.Since(start); took > 300*time.Millisecond+200*time.Millisecond {
				t.Errorf("answered after %s, want within 300ms (+ slack)", took)
			}
		})
	}
	t.Run("a user's request never waits", func(t *testing.T) {
		rd := &notYet{Reader: withObjects(t, policies, dep, rs), hidden: &appsv1.ReplicaSet{}, release: make(chan struct{})}
		h := hostileHandler(t, rd, fatInspector(), Options{OwnerWait: time.Minute})
		start := time.Now()
		if resp := h.Handle(context.Background(), asUser(t, "alice", "", "Pod", pod)); resp.Allowed {
			t.Fatal("admitted")
		}
		if n := rd.reads.Load(); n != 0 {
			t.Errorf("%d owner reads for a user's request", n)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("answered after %s", took)
		}
	})
}

// A Pod whose image differs from its owner's template in a slot (a
// mutating webhook rewrote it to a mirror) is waited for once per version
// of the owner: the cache showed that version for the whole wait, so the
// next Pods of the same owner are judged at once instead of each waiting
// OwnerWait (a rollout of 50 such Pods took 2 s a batch). A new version of
// the owner is waited for again.
func TestStaleOwnerWaitedForOncePerVersion(t *testing.T) {
	dep, rs, pod := webObjects()
	pod.Spec.Containers[0].Image = "mirror.example/app:1"
	policies := []*v1alpha1.SlimImagePolicy{keepOrJudge("keep", v1alpha1.ModeAudit, v1alpha1.ExistingWorkloadsKeep)}
	objects := withObjects(t, policies, dep, rs)
	open := make(chan struct{})
	close(open)
	rd := &notYet{Reader: objects, hidden: &appsv1.ReplicaSet{}, release: open}
	h := hostileHandler(t, rd, fatInspector(), Options{OwnerWait: 150 * time.Millisecond})
	review := func() int64 {
		t.Helper()
		before := rd.reads.Load()
		if resp := h.Handle(context.Background(), asUser(t, replicaSetController, "", "Pod", pod)); !resp.Allowed {
			t.Fatalf("denied under Audit: %v", resp.Result)
		}
		return rd.reads.Load() - before
	}
	// A review reads the owner once before judging, then again while it
	// waits: at least twice more when it waits at all.
	if n := review(); n < 3 {
		t.Fatalf("the first Pod read its owner %d times: it did not wait for the cache", n)
	}
	if n := review(); n > 2 {
		t.Errorf("the second Pod of the same owner version read it %d times: it waited again", n)
	}
	changed := rs.DeepCopy()
	if err := objects.(client.Client).Get(context.Background(), client.ObjectKeyFromObject(rs), changed); err != nil {
		t.Fatal(err)
	}
	changed.Labels = map[string]string{"touched": "yes"}
	if err := objects.(client.Client).Update(context.Background(), changed); err != nil {
		t.Fatal(err)
	}
	if n := review(); n < 3 {
		t.Errorf("a Pod of a new version of the owner read it %d times: it did not wait", n)
	}
}

// Two policies apply: the one that keeps existing workloads records the
// Pod as grandfathered, the one that judges them still denies it.
func TestStandingPerPolicy(t *testing.T) {
	dep, rs, pod := webObjects()
	rec := &decisions{}
	policies := []*v1alpha1.SlimImagePolicy{
		keepOrJudge("keep", v1alpha1.ModeEnforce, v1alpha1.ExistingWorkloadsKeep),
		keepOrJudge("judge", v1alpha1.ModeEnforce, v1alpha1.ExistingWorkloadsJudge),
	}
	h := hostileHandler(t, withObjects(t, policies, dep, rs), fatInspector(), Options{Recorder: rec})
	resp := h.Handle(context.Background(), asUser(t, replicaSetController, "", "Pod", pod))
	if resp.Allowed {
		t.Fatal("admitted though a Judge policy denies")
	}
	if msg := resp.Result.Message; !strings.Contains(msg, "[judge]") || strings.Contains(msg, "[keep]") {
		t.Errorf("denial should speak for policy judge only:\n%s", msg)
	}
	got := map[string]string{}
	for _, d := range rec.all {
		got[d.Policy.Name] = d.Reason + "/" + d.Verdict + "/" + d.Action
	}
	want := map[string]string{"keep": "ImageGrandfathered/grandfathered/Deny", "judge": "ImageRejected/deny/Deny"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
}

// The controller identities are configurable: only the names given are
// trusted, and an empty list trusts none. A dry run is answered the same
// and records nothing.
func TestStandingIdentities(t *testing.T) {
	dep, rs, pod := webObjects()
	for _, c := range []struct {
		name string
		ids  []string
		user string
		kept bool
	}{
		{"default list", nil, replicaSetController, true},
		{"custom list", []string{"system:serviceaccount:infra:rs-ctrl"}, "system:serviceaccount:infra:rs-ctrl", true},
		{"default name not in a custom list", []string{"system:serviceaccount:infra:rs-ctrl"}, replicaSetController, false},
		{"empty list", []string{}, replicaSetController, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &decisions{}
			h := hostileHandler(t, withObjects(t, []*v1alpha1.SlimImagePolicy{clusterWide()}, dep, rs), fatInspector(),
				Options{Recorder: rec, ControllerIdentities: c.ids, OwnerWait: time.Millisecond})
			if resp := h.Handle(context.Background(), asUser(t, c.user, "", "Pod", pod)); resp.Allowed != c.kept {
				t.Errorf("allowed = %v, want %v", resp.Allowed, c.kept)
			}
			dry := asUser(t, c.user, "", "Pod", pod)
			yes := true
			dry.DryRun = &yes
			if resp := h.Handle(context.Background(), dry); resp.Allowed != c.kept {
				t.Errorf("dry run: allowed = %v, want %v", resp.Allowed, c.kept)
			}
			if len(rec.all) != 1 {
				t.Errorf("%d decisions recorded, want 1 (none for the dry run)", len(rec.all))
			}
		})
	}
}

func TestInherits(t *testing.T) {
	spec := func(init, app string) *corev1.PodSpec {
		s := &corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: app}}}
		if init != "" {
			s.InitContainers = []corev1.Container{{Name: "init", Image: init}}
		}
		return s
	}
	dup := spec("", "a:1")
	dup.Containers = append(dup.Containers, corev1.Container{Name: "app", Image: "a:1"})
	for _, c := range []struct {
		name         string
		owner, child *corev1.PodSpec
		// inherited and stale list, per image of child, whether it is
		// the template's and whether the template has another there.
		inherited, stale []bool
	}{
		{"equal", spec("i:1", "a:1"), spec("i:1", "a:1"), []bool{true, true}, []bool{false, false}},
		{"pinned", spec("i:1", "a:1"), spec("i:1@"+pinnedDigest, "a:1@"+pinnedDigest), []bool{true, true}, []bool{false, false}},
		{"template already pinned, pinned again", spec("", "a:1@"+pinnedDigest), spec("", "a:1@"+pinnedDigest+"@"+pinnedDigest), []bool{false}, []bool{true}},
		{"child unpinned from a pinned template", spec("", "a:1@"+pinnedDigest), spec("", "a:1"), []bool{false}, []bool{true}},
		{"init container added", spec("", "a:1"), spec("i:1", "a:1"), []bool{false, true}, []bool{false, false}},
		{"swapped", spec("i:1", "a:1"), spec("a:1", "i:1"), []bool{false, false}, []bool{true, true}},
		{"duplicate names in the template", dup, spec("", "a:1"), []bool{false}, []bool{false}},
	} {
		st := standing{template: templateSlots(Images(c.owner, "spec"))}
		for i, img := range Images(c.child, "spec") {
			if got := st.inherits(img); got != c.inherited[i] {
				t.Errorf("%s: %s inherits = %v, want %v", c.name, img.Path, got, c.inherited[i])
			}
			if got := st.stale([]Image{img}); got != c.stale[i] {
				t.Errorf("%s: %s stale = %v, want %v", c.name, img.Path, got, c.stale[i])
			}
		}
	}
	if (standing{}).inherits(Image{Reference: "a:1", Container: "app", Source: sourceContainer}) {
		t.Error("an image inherits without a verified owner")
	}
}

// StripOwner keeps what the rule reads and drops the rest: the informer
// cache holds every workload of the cluster.
func TestStripOwner(t *testing.T) {
	now := metav1.Now()
	full := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", UID: "dep-uid", ResourceVersion: "7", Generation: 3,
			DeletionTimestamp: &now, Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"big": strings.Repeat("x", 1000)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init", Image: "init:1", Command: []string{"sh"}}},
				Containers:     []corev1.Container{{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
				Volumes: []corev1.Volume{
					{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "data:1", PullPolicy: corev1.PullAlways}}},
					{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				},
				NodeName: "n1",
			},
		}},
		Status: appsv1.DeploymentStatus{Replicas: 3},
	}
	controllerOf(full, &metav1.ObjectMeta{Name: "owner", UID: "o"}, "example.com/v1", "Thing")
	got, err := StripOwner(full)
	if err != nil {
		t.Fatal(err)
	}
	want := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", UID: "dep-uid", ResourceVersion: "7", Generation: 3,
			DeletionTimestamp: &now, OwnerReferences: full.OwnerReferences},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "init:1"}},
			Containers:     []corev1.Container{{Name: "app", Image: "app:1"}},
			Volumes:        []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "data:1"}}}},
		}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("StripOwner (-want +got):\n%s", diff)
	}
	cached := map[reflect.Type]bool{}
	for _, o := range OwnerObjects() {
		cached[reflect.TypeOf(o)] = true
	}
	for child, parents := range parentKinds {
		for _, gvk := range parents {
			if !cached[reflect.TypeOf(kindOf(gvk).newObject())] {
				t.Errorf("%s, owner of %s, is not among OwnerObjects: it would never be found", gvk.Kind, child.Kind)
			}
		}
	}
	for _, o := range OwnerObjects() {
		out, err := StripOwner(o)
		if err != nil || reflect.TypeOf(out) != reflect.TypeOf(o) {
			t.Errorf("StripOwner(%T) = %T, %v", o, out, err)
		}
	}
	rc, err := StripOwner(&corev1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "no-template"}})
	if err != nil || rc.(*corev1.ReplicationController).Spec.Template != nil {
		t.Errorf("a ReplicationController without a template: %+v, %v", rc, err)
	}
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Annotations: map[string]string{"a": "b"}}}
	if out, err := StripOwner(other); err != nil || out != any(other) {
		t.Errorf("StripOwner(ConfigMap) = %v, %v; want it unchanged", out, err)
	}
	if out, err := StripOwner("tombstone"); err != nil || out != "tombstone" {
		t.Errorf("StripOwner(string) = %v, %v", out, err)
	}
}

func TestDefaultControllerIdentities(t *testing.T) {
	want := []string{
		"system:serviceaccount:kube-system:replicaset-controller",
		"system:serviceaccount:kube-system:deployment-controller",
		"system:serviceaccount:kube-system:job-controller",
		"system:serviceaccount:kube-system:cronjob-controller",
		"system:serviceaccount:kube-system:statefulset-controller",
		"system:serviceaccount:kube-system:daemon-set-controller",
		"system:serviceaccount:kube-system:replication-controller",
		"system:kube-controller-manager",
	}
	if diff := cmp.Diff(want, DefaultControllerIdentities()); diff != "" {
		t.Errorf("DefaultControllerIdentities (-want +got):\n%s", diff)
	}
}

// A Pod CREATE resolves its tags anew (rechecksTags), so that what the
// kubelet pulls is what was judged. A controller's Pod whose every image
// its verified owner's template has in the same slot, under policies
// that all keep existing workloads, is admitted whatever its tags name
// now: its review trusts the tag cache instead of asking each registry
// once per Pod of a rollout. Any other Pod CREATE still resolves its tags.
func TestStandingSkipsTagRecheckOfInheritedPods(t *testing.T) {
	dep, rs, pod := webObjects()
	changed := pod.DeepCopy()
	changed.Spec.Containers[0].Image = "app:2"
	sidecar := pod.DeepCopy()
	sidecar.Spec.Containers = append(sidecar.Spec.Containers, corev1.Container{Name: "proxy", Image: "slim-proxy:1"})
	keep := keepOrJudge("keep", v1alpha1.ModeEnforce, v1alpha1.ExistingWorkloadsKeep)
	judge := keepOrJudge("judge", v1alpha1.ModeAudit, v1alpha1.ExistingWorkloadsJudge)
	for _, c := range []struct {
		name     string
		policies []*v1alpha1.SlimImagePolicy
		user     string
		pod      *corev1.Pod
		recheck  bool
		allowed  bool
	}{
		{"inherited", []*v1alpha1.SlimImagePolicy{keep}, replicaSetController, pod, false, true},
		{"a user's Pod", []*v1alpha1.SlimImagePolicy{keep}, "alice", pod, true, false},
		{"a changed image", []*v1alpha1.SlimImagePolicy{keep}, replicaSetController, changed, true, false},
		{"a sidecar the template lacks", []*v1alpha1.SlimImagePolicy{keep}, replicaSetController, sidecar, true, true},
		{"a policy that judges children too", []*v1alpha1.SlimImagePolicy{keep, judge}, replicaSetController, pod, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			rechecked := map[string]bool{}
			fat := fatInspector()
			ins := inspectFunc(func(ctx context.Context, r registry.Request) (*registry.Inspection, error) {
				mu.Lock()
				rechecked[r.Reference] = rechecked[r.Reference] || r.Revalidate
				mu.Unlock()
				return fat(ctx, r)
			})
			rec := &decisions{}
			h := hostileHandler(t, withObjects(t, c.policies, dep, rs), ins, Options{Recorder: rec, OwnerWait: time.Millisecond})
			resp := h.Handle(context.Background(), asUser(t, c.user, "", "Pod", c.pod))
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, c.allowed, resp.Result)
			}
			if len(rechecked) == 0 {
				t.Fatal("no image inspected")
			}
			for ref, got := range rechecked {
				if got != c.recheck {
					t.Errorf("%s resolved anew = %v, want %v", ref, got, c.recheck)
				}
			}
			if !slices.ContainsFunc(rec.all, func(d events.Decision) bool { return d.Reason != "" }) {
				t.Errorf("nothing recorded: %+v", rec.all)
			}
		})
	}
}
