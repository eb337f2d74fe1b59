package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/internal/devcluster"
)

// converge is how long a Deployment gets to reach a state.
const converge = time.Minute

// eventually polls f until it succeeds or within passes.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	if err := devcluster.Poll(t.Context(), within, f); err != nil {
		t.Fatal(err)
	}
}

// namespace creates a namespace with these labels, where a stand-in
// kubelet reports every Pod Ready, with the digest it runs; both end with
// the test.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6), Labels: labels}}
	if err := e2e.client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), ns) })
	kubelet := devcluster.Go(context.Background(), devcluster.Kubelet{Client: e2e.client, Namespace: ns.Name, ImageID: devcluster.RegistryImageID}.Run)
	t.Cleanup(func() {
		if err := kubelet.Stop(5 * time.Second); err != nil {
			t.Errorf("stand-in kubelet: %v", err)
		}
	})
	return ns.Name
}

// deployment returns a Deployment of replicas Pods running image in a
// container named "app".
func deployment(ns, name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
}

// rolledOut reports why a Deployment is not fully rolled out and
// available, or nil: the controller has seen its latest generation, every
// replica runs the latest template and is available, and no ReplicaSet
// failed to create Pods.
func rolledOut(d *appsv1.Deployment) error {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	if s.ObservedGeneration != d.Generation || s.Replicas != want || s.UpdatedReplicas != want || s.AvailableReplicas != want {
		return fmt.Errorf("deployment %s: generation %d observed %d; replicas %d updated %d available %d, want %d; conditions %v",
			d.Name, d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.AvailableReplicas, want, conditions(d))
	}
	for _, c := range s.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status != corev1.ConditionTrue ||
			c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return fmt.Errorf("deployment %s: conditions %v", d.Name, conditions(d))
		}
	}
	return nil
}

// conditions words a Deployment's conditions for messages.
func conditions(d *appsv1.Deployment) []string {
	var out []string
	for _, c := range d.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s (%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return out
}

// waitRolledOut waits until the Deployment is rolled out (rolledOut).
func waitRolledOut(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	eventually(t, converge, func() error {
		if err := e2e.client.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		return rolledOut(d)
	})
}
