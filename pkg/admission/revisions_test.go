package admission

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// revisionOf is a ControllerRevision of sts holding template, as the
// StatefulSet controller writes it: the template as a replace patch.
func revisionOf(t testing.TB, sts *appsv1.StatefulSet, name string, uid types.UID, template corev1.PodTemplateSpec) *appsv1.ControllerRevision {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"spec": map[string]any{"template": template}})
	if err != nil {
		t.Fatal(err)
	}
	rev := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Namespace: sts.Namespace, Name: name},
		Data: runtime.RawExtension{Raw: raw}, Revision: 1}
	controllerOf(rev, &metav1.ObjectMeta{Name: sts.Name, UID: uid}, "apps/v1", "StatefulSet")
	return rev
}

// A StatefulSet in a partitioned rollout, or one whose Pod is lost while
// it rolls, recreates a Pod from its current revision, not from the live
// template: under Keep, that Pod inherits as a ReplicaSet's Pod inherits
// from its older ReplicaSet, when the StatefulSet controller creates it
// from the revision the StatefulSet reports (status.currentRevision or
// updateRevision) and that revision is the StatefulSet's own. Otherwise
// (another revision, another owner's, other images, another requester)
// the Pod is judged on its own (issue 10: Enforce must not stop a
// StatefulSet from replacing a Pod of the revision it runs).
func TestStatefulSetPodOfItsCurrentRevision(t *testing.T) {
	old := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "db:1"}}}}
	live := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "db:2"}}}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "db", UID: "sts-uid"},
		Spec:   appsv1.StatefulSetSpec{Template: live},
		Status: appsv1.StatefulSetStatus{CurrentRevision: "db-1111", UpdateRevision: "db-2222"}}
	objs := []client.Object{sts,
		revisionOf(t, sts, "db-1111", sts.UID, old),
		revisionOf(t, sts, "db-2222", sts.UID, live),
		revisionOf(t, sts, "db-0000", sts.UID, old),     // an older revision the StatefulSet no longer runs
		revisionOf(t, sts, "db-3333", "other-uid", old), // another StatefulSet's
	}
	pod := func(revision, image string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "db-0",
			Labels: map[string]string{appsv1.ControllerRevisionHashLabelKey: revision}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: image}}}}
		controllerOf(p, sts, "apps/v1", "StatefulSet")
		return p
	}
	const controller = "system:serviceaccount:kube-system:statefulset-controller"
	cases := []struct {
		name string
		user string
		pod  *corev1.Pod
		kept bool
	}{
		{"current revision", controller, pod("db-1111", "db:1"), true},
		{"update revision", controller, pod("db-2222", "db:2"), true},
		{"a revision the StatefulSet no longer runs", controller, pod("db-0000", "db:1"), false},
		{"another StatefulSet's revision", controller, pod("db-3333", "db:1"), false},
		{"a revision that does not exist", controller, pod("db-4444", "db:1"), false},
		{"images other than the revision's", controller, pod("db-1111", "db:9"), false},
		{"a user's Pod naming the revision", "alice", pod("db-1111", "db:1"), false},
	}
	// The webhook's cache holds the objects as StripOwner leaves them.
	var stripped []client.Object
	for _, o := range objs {
		s, err := StripOwner(o)
		if err != nil {
			t.Fatal(err)
		}
		stripped = append(stripped, s.(client.Object))
	}
	policies := []*v1alpha1.SlimImagePolicy{keepOrJudge("keep", v1alpha1.ModeEnforce, v1alpha1.ExistingWorkloadsKeep)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &decisions{}
			h := hostileHandler(t, withObjects(t, policies, stripped...), fatInspector(), Options{Recorder: rec, OwnerWait: time.Millisecond})
			resp := h.Handle(context.Background(), asUser(t, c.user, "", "Pod", c.pod))
			if resp.Allowed != c.kept {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, c.kept, resp.Result)
			}
			if !c.kept {
				return
			}
			if len(rec.all) != 1 || rec.all[0].Reason != "ImageGrandfathered" || rec.all[0].VerifiedOwner == nil ||
				rec.all[0].VerifiedOwner.UID != sts.UID {
				t.Fatalf("decisions %+v, want one ImageGrandfathered regarding StatefulSet db", rec.all)
			}
		})
	}
}
