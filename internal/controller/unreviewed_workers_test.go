package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/events"
)

// Pods found unreviewed are judged several at a time: a judge can take
// up to judgeTimeout (a registry that does not answer), and a Pod not
// judged within the review window is never judged, so one worker would
// drop the Pods of an outage after about twenty slow ones. Here the
// judge of each Pod waits until another Pod's judge has started.
func TestUnreviewedPodsJudgedConcurrently(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd: not in -short mode (make test-unit)")
	}
	cfg, scheme, admin := startAPI(t, "shop")
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: config.Controller{SkipNameValidation: &skip}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := events.NewRecorder(events.Options{Client: admin})
	if err != nil {
		t.Fatal(err)
	}
	var judging atomic.Int32
	judge := func(ctx context.Context, _ *corev1.Pod) ([]events.Decision, error) {
		judging.Add(1)
		for judging.Load() < 2 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return nil, nil
	}
	l := NewReviewLog(100)
	l.since = l.since.Add(-time.Hour)
	l.start = l.since
	r := &UnreviewedPodReconciler{Client: mgr.GetClient(), API: admin, Log: l, Judge: judge, Events: rec, Namespace: "slimgate-system",
		WebhookConfigName: "slimgate", Delay: time.Millisecond, Window: 10 * time.Minute}
	if err := r.SetupWithManager(mgr, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	for _, name := range []string{"a", "b"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "fat:1"}}}}
		if err := admin.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	var uids []types.UID
	for _, name := range []string{"a", "b"} {
		var pod corev1.Pod
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name}, &pod); err != nil {
			t.Fatal(err)
		}
		uids = append(uids, pod.UID)
	}
	err = devcluster.Poll(ctx, judgeTimeout/2, func() error {
		for i, uid := range uids {
			if !r.WasUnreviewed(uid) {
				return fmt.Errorf("Pod %d of 2 not judged", i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v: Pods found unreviewed are judged one at a time", err)
	}
}
