package controller

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/registry"
)

// goSDK is an Inspector whose every image carries the Go toolchain.
type goSDK struct{}

func (goSDK) Inspect(_ context.Context, req registry.Request) (*registry.Inspection, error) {
	f := &image.Facts{Reference: req.Reference, Digest: "sha256:" + strings.Repeat("ab", 32),
		Env: []string{"GOLANG_VERSION=1.24.4", "PATH=/usr/local/go/bin:/usr/bin"}}
	return &registry.Inspection{Reference: req.Reference, Digest: f.Digest, Images: []*image.Facts{f}}, nil
}

// rollout is a Deployment "web" admitted before the policy, its
// ReplicaSet, and a Pod made of that ReplicaSet's template by manager.
func rollout(manager, podImage string) (*appsv1.Deployment, *appsv1.ReplicaSet, *corev1.Pod) {
	yes := true
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "fat:1"}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "dep-uid"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5d4f8", UID: "rs-uid",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid", Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5d4f8-x7k2p", UID: "pod-uid",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f8", UID: "rs-uid", Controller: &yes}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: podImage}}}}
	return dep, rs, pod
}

// judgeScheme is the scheme of the readers the judge tests build.
func judgeScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// judgeOnce judges pod with a JudgeFunc reading r (goSDK images).
func judgeOnce(t *testing.T, r client.Reader, pod *corev1.Pod) []events.Decision {
	t.Helper()
	judge, err := NewJudge(admission.Options{Reader: r, Inspector: goSDK{}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := judge(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestJudgeAsAdmissionWould: a Pod found unreviewed is judged as the
// review of its creation would have judged it, owner's standing included:
// the ReplicaSet controller's Pod with its template's image inherits the
// Deployment's standing under existingWorkloads Keep (ImageGrandfathered);
// one with another image, or under existingWorkloads Judge, is judged on
// its own; the decisions about the controller's Pods regard the verified
// owner, the Deployment. A Pod someone else made naming the same owner is
// judged on its own and regards itself.
func TestJudgeAsAdmissionWould(t *testing.T) {
	s := judgeScheme(t)
	for _, tc := range []struct {
		name, manager, image string
		existing             v1alpha1.ExistingWorkloads
		want                 string
		owner                bool
	}{
		{"controller's pod, template image", "kube-controller-manager", "fat:1", v1alpha1.ExistingWorkloadsKeep, events.ReasonGrandfathered, true},
		{"a user's pod naming the owner", "kubectl-create", "fat:1", v1alpha1.ExistingWorkloadsKeep, events.ReasonAudited, false},
		{"controller's pod, another image", "kube-controller-manager", "fat:2", v1alpha1.ExistingWorkloadsKeep, events.ReasonAudited, true},
		{"existing workloads judged", "kube-controller-manager", "fat:1", v1alpha1.ExistingWorkloadsJudge, events.ReasonAudited, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep, rs, pod := rollout(tc.manager, tc.image)
			p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "audit"},
				Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeAudit, ExistingWorkloads: tc.existing}}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
			ds := judgeOnce(t, fake.NewClientBuilder().WithScheme(s).WithObjects(p, ns, dep, rs).Build(), pod)
			if len(ds) != 1 {
				t.Fatalf("%d decisions, want 1: %+v", len(ds), ds)
			}
			d := ds[0]
			if d.Reason != tc.want {
				t.Errorf("reason %q, want %q; note:\n%s", d.Reason, tc.want, d.Note)
			}
			var regards client.ObjectKey
			if r := events.Regarding(d); r.Kind != "Pod" {
				regards = client.ObjectKey{Namespace: r.Namespace, Name: r.Kind + "/" + r.Name}
			}
			wantOwner := client.ObjectKey{}
			if tc.owner {
				wantOwner = client.ObjectKey{Namespace: "shop", Name: "Deployment/web"}
			}
			if inherits := strings.Contains(d.Note, "template of ReplicaSet web-5d4f8"); inherits != (tc.want == events.ReasonGrandfathered) {
				t.Errorf("the note names the owner whose template it inherits: %v, want %v:\n%s", inherits, !inherits, d.Note)
			}
			if regards != wantOwner {
				t.Errorf("the decision regards %v, want %v (empty: the Pod)", regards, wantOwner)
			}
			// The ImageUnreviewed Event says what the review would have done.
			notes := unreviewedNotes(d, pod)
			if len(notes) != 1 {
				t.Fatalf("%d ImageUnreviewed notes, want 1: %+v", len(notes), notes)
			}
			wantSays := "would have admitted this image and recorded its findings"
			if tc.want == events.ReasonGrandfathered {
				wantSays = "would have admitted this image, grandfathered with its owner Deployment web, and recorded its findings there (ImageGrandfathered)"
			}
			if !strings.Contains(notes[0].Note, wantSays) {
				t.Errorf("the Event's note does not say %q:\n%s", wantSays, notes[0].Note)
			}
		})
	}
}

// ownerGets counts the ReplicaSet reads of a reader.
type ownerGets struct {
	client.Reader
	n int
}

func (r *ownerGets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*appsv1.ReplicaSet); ok {
		r.n++
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

// A Pod found unreviewed exists well after its creation: its owner is in
// the cache by then or never will be, so the replay does not wait for it
// (the review of a live creation waits up to OwnerWait). Managed fields
// are the client's word, so anyone may have a Pod replayed as a
// controller's; with a wait, each one naming a missing owner held the
// single worker of the unreviewed Pod controller for OwnerWait.
func TestJudgeDoesNotWaitForOwners(t *testing.T) {
	s := judgeScheme(t)
	_, _, pod := rollout(ControllerManager, "fat:1") // its ReplicaSet is not in the cache
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "audit"}, Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeAudit}}
	reader := &ownerGets{Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(p, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}).Build()}
	ds := judgeOnce(t, reader, pod)
	if len(ds) != 1 || ds[0].Reason != events.ReasonAudited {
		t.Fatalf("decisions %+v, want one ImageAudited", ds)
	}
	if reader.n > 2 {
		t.Errorf("the owner was read %d times: the replay waited for it", reader.n)
	}
}
