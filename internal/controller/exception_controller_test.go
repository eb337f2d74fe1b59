package controller

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/exception"
)

// The reconciler follows an exception through its life on a fake clock:
// active (requeued for when it starts expiring), expiring (requeued for
// its expiry), expired (Expired condition, not requeued), deleted; the
// gauge counts it in one state at a time.
func TestExceptionReconciler(t *testing.T) {
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	expires := created.Add(30 * 24 * time.Hour)
	e := &v1alpha1.SlimImageException{ObjectMeta: metav1.ObjectMeta{Name: "ci", Namespace: "team", Generation: 1},
		Spec: v1alpha1.SlimImageExceptionSpec{Policies: []string{"*"}, Rules: []string{"*"}, Images: []string{"*"},
			Reason: "ci", Expires: metav1.NewTime(expires)}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(e).WithStatusSubresource(e).Build()
	now := created
	reg := prometheus.NewRegistry()
	r := &ExceptionReconciler{Client: c, Now: func() time.Time { return now }}
	if err := r.init(reg); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(e)
	step := func(wantRequeue time.Duration, wantState string, wantActive metav1.ConditionStatus) {
		t.Helper()
		res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key})
		if err != nil {
			t.Fatal(err)
		}
		if res.RequeueAfter != wantRequeue {
			t.Errorf("at %s: requeue after %s, want %s", now, res.RequeueAfter, wantRequeue)
		}
		want := map[string]float64{StateActive: 0, StateExpiring: 0, StateExpired: 0}
		if wantState != "" {
			want[wantState] = 1
		}
		if diff := cmp.Diff(want, exceptionsGauge(t, reg)); diff != "" {
			t.Errorf("at %s: slimgate_exceptions{state} (-want +got):\n%s", now, diff)
		}
		if wantState == "" {
			return
		}
		var got v1alpha1.SlimImageException
		if err := c.Get(context.Background(), key, &got); err != nil {
			t.Fatal(err)
		}
		active := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ExceptionActive)
		expired := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ExceptionExpired)
		if active == nil || expired == nil || active.Status != wantActive || (expired.Status == metav1.ConditionTrue) == (wantActive == metav1.ConditionTrue) {
			t.Errorf("at %s: conditions %+v, want Active %s and Expired the opposite", now, got.Status.Conditions, wantActive)
		}
	}
	step(expires.Add(-exception.ExpiringWithin).Sub(now), StateActive, metav1.ConditionTrue)
	now = expires.Add(-exception.ExpiringWithin)
	step(exception.ExpiringWithin, StateExpiring, metav1.ConditionTrue)
	now = expires.Add(-time.Minute)
	step(time.Minute, StateExpiring, metav1.ConditionTrue)
	now = expires
	step(0, StateExpired, metav1.ConditionFalse)
	if err := c.Delete(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	step(0, "", "")
}

// exceptionsGauge gathers slimgate_exceptions from reg, by state.
func exceptionsGauge(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || families[0].GetName() != "slimgate_exceptions" {
		t.Fatalf("gathered %v (%v), want slimgate_exceptions alone", families, err)
	}
	out := map[string]float64{}
	for _, m := range families[0].GetMetric() {
		out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	return out
}
