package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"slimgate.dev/slimgate/api/v1alpha1"
)

func newClient(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.SlimImagePolicy{}).WithInterceptorFuncs(funcs).Build()
}

func ready(status metav1.ConditionStatus, reason, message string, generation int64) v1alpha1.SlimImagePolicyStatus {
	return v1alpha1.SlimImagePolicyStatus{ObservedGeneration: generation, Conditions: []metav1.Condition{{
		Type: ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
		LastTransitionTime: metav1.Now()}}}
}

func TestReconcileSetsReady(t *testing.T) {
	valid := v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce}
	invalid := v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce,
		Toolchains: v1alpha1.ToolchainRules{Deny: []string{"toolchain.no-such-rule"}}}
	const applied = "the webhook applies this policy"
	cases := []struct {
		name       string
		spec       v1alpha1.SlimImagePolicySpec
		generation int64
		status     v1alpha1.SlimImagePolicyStatus
		// want is the Ready condition after Reconcile; message is a
		// substring of its message.
		wantStatus  metav1.ConditionStatus
		wantReason  string
		wantMessage string
		// written says whether Reconcile must update the status.
		written bool
	}{
		{name: "valid", spec: valid, generation: 3,
			wantStatus: metav1.ConditionTrue, wantReason: ReasonAccepted, wantMessage: applied, written: true},
		{name: "invalid", spec: invalid, generation: 2,
			wantStatus: metav1.ConditionFalse, wantReason: ReasonInvalid, wantMessage: "spec.toolchains.deny[0]", written: true},
		{name: "already ready", spec: valid, generation: 4, status: ready(metav1.ConditionTrue, ReasonAccepted, applied, 4),
			wantStatus: metav1.ConditionTrue, wantReason: ReasonAccepted, wantMessage: applied, written: false},
		{name: "ready for an older generation", spec: valid, generation: 5, status: ready(metav1.ConditionTrue, ReasonAccepted, applied, 4),
			wantStatus: metav1.ConditionTrue, wantReason: ReasonAccepted, wantMessage: applied, written: true},
		{name: "now invalid", spec: invalid, generation: 4, status: ready(metav1.ConditionTrue, ReasonAccepted, applied, 4),
			wantStatus: metav1.ConditionFalse, wantReason: ReasonInvalid, wantMessage: "toolchain.no-such-rule", written: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: c.generation}, Spec: c.spec, Status: c.status}
			kube := newClient(t, interceptor.Funcs{}, p)
			var before v1alpha1.SlimImagePolicy
			if err := kube.Get(t.Context(), client.ObjectKeyFromObject(p), &before); err != nil {
				t.Fatal(err)
			}
			r := &PolicyStatusReconciler{Client: kube}
			if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)}); err != nil {
				t.Fatal(err)
			}
			var got v1alpha1.SlimImagePolicy
			if err := kube.Get(t.Context(), client.ObjectKeyFromObject(p), &got); err != nil {
				t.Fatal(err)
			}
			if written := got.ResourceVersion != before.ResourceVersion; written != c.written {
				t.Errorf("status written: %v, want %v", written, c.written)
			}
			if got.Status.ObservedGeneration != c.generation {
				t.Errorf("status.observedGeneration %d, want %d", got.Status.ObservedGeneration, c.generation)
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, ConditionReady)
			if cond == nil {
				t.Fatalf("no Ready condition in %+v", got.Status)
			}
			if cond.Status != c.wantStatus || cond.Reason != c.wantReason || cond.ObservedGeneration != c.generation ||
				!strings.Contains(cond.Message, c.wantMessage) {
				t.Errorf("Ready = %+v, want status %s, reason %s, generation %d, a message with %q",
					cond, c.wantStatus, c.wantReason, c.generation, c.wantMessage)
			}
		})
	}
}

// A policy deleted before its turn is nothing to do.
func TestReconcileIgnoresMissingPolicy(t *testing.T) {
	r := &PolicyStatusReconciler{Client: newClient(t, interceptor.Funcs{})}
	if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "gone"}}); err != nil {
		t.Errorf("Reconcile of a missing policy: %v", err)
	}
}

// A failed status write is returned, so the controller retries.
func TestReconcileReturnsWriteErrors(t *testing.T) {
	refused := errors.New("refused")
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 1}}
	kube := newClient(t, interceptor.Funcs{
		SubResourceUpdate: func(context.Context, client.Client, string, client.Object, ...client.SubResourceUpdateOption) error {
			return refused
		},
	}, p)
	r := &PolicyStatusReconciler{Client: kube}
	_, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)})
	if !errors.Is(err, refused) {
		t.Errorf("Reconcile error %v, want it to wrap %v", err, refused)
	}
}
