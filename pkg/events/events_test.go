package events

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// controller is an apps/v1 controller owner reference.
func controller(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: &yes}}
}

var podKind = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}

func TestRegarding(t *testing.T) {
	deployment := &corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "uid-web"}
	cases := []struct {
		name string
		d    Decision
		want corev1.ObjectReference
	}{
		{"named pod", Decision{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-p"}}, Action: ActionAdmit},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p", UID: "uid-p"}},
		{"generated name", Decision{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "p-", Name: "p-x7k2q", UID: "uid-x"}}, Action: ActionAdmit},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p-x7k2q", UID: "uid-x"}},
		{"generateName only", Decision{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "p-"}}, Action: ActionAdmit},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p"}},
		// The requester writes ownerReferences: they say nothing.
		{"controller reference", Decision{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1-abc", UID: "uid-abc",
			OwnerReferences: controller("ReplicaSet", "web-1")}}, Action: ActionAdmit},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-1-abc", UID: "uid-abc"}},
		{"refused: no UID", Decision{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fat", UID: "uid-attempt-7",
			OwnerReferences: controller("ReplicaSet", "web-1")}}, Action: ActionDeny},
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "fat"}},
		{"verified owner", Decision{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1-abc", UID: "uid-abc"}},
			VerifiedOwner: deployment, Action: ActionAdmit},
			corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "web", UID: "uid-web"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.d.Kind = podKind
			if diff := cmp.Diff(c.want, Regarding(c.d)); diff != "" {
				t.Errorf("Regarding (-want +got):\n%s", diff)
			}
		})
	}
	if deployment.Namespace != "" {
		t.Error("Regarding changed the verified owner it was given")
	}
}

func TestNotes(t *testing.T) {
	long := strings.Repeat("x", 2000) + "%d"
	cases := []struct {
		name string
		d    Decision
		want []ImageNote
	}{
		{"nothing found", Decision{Note: "n"}, nil},
		{"no images named", Decision{Reason: ReasonRejected, Note: "n"}, []ImageNote{{Reason: ReasonRejected, Note: "n"}}},
		{"one Event per image with a reason", Decision{Reason: ReasonRejected, Note: "all", Images: []ImageNote{
			{Image: "a:1", Reason: ReasonRejected, Note: "a"}, {Image: "b:1"}, {Image: "c:1", Reason: ReasonAudited, Note: "c"}}},
			[]ImageNote{{Image: "a:1", Reason: ReasonRejected, Note: "a"}, {Image: "c:1", Reason: ReasonAudited, Note: "c"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, c.d.Notes()); diff != "" {
				t.Errorf("Notes (-want +got):\n%s", diff)
			}
		})
	}
	for _, d := range []Decision{{Reason: ReasonRejected, Note: long}, {Reason: ReasonRejected, Images: []ImageNote{{Image: "a", Reason: ReasonRejected, Note: long}}}} {
		if n := d.Notes()[0].Note; len(n) > MaxNote {
			t.Errorf("note of %d bytes, over %d", len(n), MaxNote)
		}
	}
}

func TestRecordCountsDecisions(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := NewRecorder(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "pol"}, Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	r.Record(context.Background(), Decision{Object: pod, Kind: podKind, Policy: p, Verdict: "deny", Reason: ReasonRejected, Action: ActionDeny, Note: "n"})
	r.Record(context.Background(), Decision{Object: pod, Kind: podKind, Policy: p, Verdict: "allow"})
	for verdict, want := range map[string]float64{"deny": 1, "allow": 1} {
		if got := value(t, r.Decisions().WithLabelValues("pol", "Enforce", verdict)); got != want {
			t.Errorf("%s count = %v, want %v", verdict, got, want)
		}
	}
	// Without a client nothing is queued, so nothing is dropped either.
	if got := value(t, r.Dropped().WithLabelValues(DropQueueFull)); got != 0 {
		t.Errorf("dropped %v occurrences without a client", got)
	}
	if _, err := NewRecorder(Options{Registerer: reg}); err == nil {
		t.Error("a second recorder registered the same metrics")
	}
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
