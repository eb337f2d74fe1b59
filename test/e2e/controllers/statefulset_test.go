package controllers

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// A fat StatefulSet admitted under Audit, then given a slim image with a
// partition that keeps its Pods on the old revision (a staged rollout),
// keeps replacing a lost Pod of that revision once the policy enforces:
// the StatefulSet controller makes it from the current revision, whose
// images are not the live template's, and it is recorded as
// grandfathered on the StatefulSet.
func TestEnforceKeepsStatefulSetRevision(t *testing.T) {
	sel := map[string]string{"e2e.slimgate.dev/case": rand.String(8)}
	ns := namespace(t, sel)
	p := auditPolicy(t, v1alpha1.ExistingWorkloadsKeep, sel)
	replicas := int32(2)
	labels := map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: &replicas, ServiceName: "db", PodManagementPolicy: appsv1.ParallelPodManagement,
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &replicas}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: e2e.reg.GoSDKApp()}}}},
	}}
	if err := e2e.client.Create(t.Context(), sts); err != nil {
		t.Fatalf("audit refused the StatefulSet: %v", err)
	}
	pod0 := waitStatefulPod(t, ns, "db-0", "")

	if err := patch(t, p, func(p *v1alpha1.SlimImagePolicy) { p.Spec.Mode = v1alpha1.ModeEnforce }); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, p)
	if err := patch(t, sts, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = e2e.reg.StaticApp() }); err != nil {
		t.Fatalf("the slim image was refused: %v", err)
	}
	webhooktest.Eventually(t, converge, func() error {
		var now appsv1.StatefulSet
		if err := e2e.client.Get(t.Context(), client.ObjectKeyFromObject(sts), &now); err != nil {
			return err
		}
		if now.Status.ObservedGeneration < now.Generation || now.Status.UpdateRevision == now.Status.CurrentRevision {
			return fmt.Errorf("status %+v: the new revision not yet seen", now.Status)
		}
		return nil
	})

	if err := e2e.client.Delete(t.Context(), &pod0); err != nil {
		t.Fatal(err)
	}
	again := waitStatefulPod(t, ns, "db-0", pod0.UID)
	if img := again.Spec.Containers[0].Image; img != e2e.reg.GoSDKApp() {
		t.Errorf("db-0 came back with %s, want the current revision's %s", img, e2e.reg.GoSDKApp())
	}
	ev := waitEvent(t, ns, "db", "ImageGrandfathered")
	if ev.Regarding.Kind != "StatefulSet" || ev.Regarding.Name != "db" {
		t.Errorf("the grandfathered Pod's Event regards %s %s, want the StatefulSet", ev.Regarding.Kind, ev.Regarding.Name)
	}
	if rejected := eventsWith(t, ns, "ImageRejected"); len(rejected) > 0 {
		t.Errorf("refusals recorded: %v", rejected)
	}
}

// waitStatefulPod waits until Pod name exists, not being deleted, with a
// UID other than not, and returns it.
func waitStatefulPod(t *testing.T, ns, name string, not types.UID) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	webhooktest.Eventually(t, converge, func() error {
		if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
			return err
		}
		if pod.DeletionTimestamp != nil || pod.UID == not {
			return fmt.Errorf("Pod %s is the old one", name)
		}
		return nil
	})
	return pod
}
