package events

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clientevents "k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// controller is an apps/v1 controller owner reference.
func controller(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: &yes}}
}

func TestRegarding(t *testing.T) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", OwnerReferences: controller("Deployment", "web")}}
	r, err := NewRecorder(nil, fake.NewClientBuilder().WithScheme(s).WithObjects(rs).Build(), nil)
	if err != nil {
		t.Fatal(err)
	}
	podKind := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	cases := []struct {
		name string
		obj  *corev1.Pod
		want corev1.ObjectReference
	}{
		{"named pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p"}},
		{"generateName only", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "p-"}},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p"}},
		{"replicaset's deployment", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "web-1-", OwnerReferences: controller("ReplicaSet", "web-1")}},
			corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "web", UID: "uid-web"}},
		{"owner not found", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "x-", OwnerReferences: controller("ReplicaSet", "gone")}},
			corev1.ObjectReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "ns", Name: "gone", UID: "uid-gone"}},
		{"other controller", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0", OwnerReferences: controller("StatefulSet", "db")}},
			corev1.ObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Namespace: "ns", Name: "db", UID: "uid-db"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, *r.Regarding(context.Background(), c.obj, podKind)); diff != "" {
				t.Errorf("Regarding (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecord(t *testing.T) {
	fr := clientevents.NewFakeRecorder(10)
	reg := prometheus.NewRegistry()
	r, err := NewRecorder(fr, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "pol"}, Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	kind := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	r.Record(context.Background(), Decision{Object: pod, Kind: kind, Policy: p, Verdict: "deny", Reason: ReasonRejected, Action: ActionDeny, Note: strings.Repeat("x", 2000) + "%d"})
	r.Record(context.Background(), Decision{Object: pod, Kind: kind, Policy: p, Verdict: "allow"})
	if got := count(t, r, "deny"); got != 1 {
		t.Errorf("deny count = %v", got)
	}
	if got := count(t, r, "allow"); got != 1 {
		t.Errorf("allow count = %v", got)
	}
	if len(fr.Events) != 1 {
		t.Fatalf("events = %d, want 1 (none for a decision without a reason)", len(fr.Events))
	}
	ev := <-fr.Events
	if !strings.HasPrefix(ev, "Warning ImageRejected ") || len(ev) > MaxNote+len("Warning ImageRejected ") {
		t.Errorf("event %q (%d bytes)", ev[:40], len(ev))
	}
}

func count(t *testing.T, r *Recorder, verdict string) float64 {
	t.Helper()
	var m dto.Metric
	if err := r.Decisions().WithLabelValues("pol", "Enforce", verdict).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
