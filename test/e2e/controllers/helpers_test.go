package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// converge is how long a Deployment gets to reach a state.
const converge = time.Minute

// namespace creates a namespace with these labels, where a stand-in
// kubelet reports every Pod Ready, with the digest it runs; both end with
// the test.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := e2e.Namespace(t, labels)
	kubelet := devcluster.Go(context.Background(), devcluster.Kubelet{Client: e2e.client, Namespace: ns, ImageID: devcluster.RegistryImageID}.Run)
	t.Cleanup(func() {
		if err := kubelet.Stop(5 * time.Second); err != nil {
			t.Errorf("stand-in kubelet: %v", err)
		}
	})
	return ns
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
	webhooktest.Eventually(t, converge, func() error {
		if err := e2e.client.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		return rolledOut(d)
	})
}

// metricValue reads the counter name of these labels from the registry
// the in-process webhook registers with (0 when it has no such series). A
// webhook run again registers its counters anew, from 0.
func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// auditPolicy creates an Audit policy with existingWorkloads e selecting
// the namespaces labelled sel, allowed to reach the loopback registries,
// waits until it is Ready and deletes it after the test.
func auditPolicy(t testing.TB, e v1alpha1.ExistingWorkloads, sel map[string]string) *v1alpha1.SlimImagePolicy {
	t.Helper()
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6)}, Spec: v1alpha1.SlimImagePolicySpec{
		Mode:              v1alpha1.ModeAudit,
		ExistingWorkloads: e,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel},
		Registries:        v1alpha1.RegistryRules{AllowPrivateNetworks: true, Insecure: []string{e2e.reg.Open, e2e.reg.Private}},
	}}
	if err := e2e.client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), p) })
	waitPolicy(t, p)
	return p
}

// waitPolicy waits until the webhook applies the policy's latest generation.
func waitPolicy(t testing.TB, p *v1alpha1.SlimImagePolicy) {
	t.Helper()
	if err := devcluster.WaitPolicyReady(t.Context(), e2e.client, p.Name, controller.ConditionReady, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// patch applies change to obj as a merge patch.
func patch[T client.Object](t *testing.T, obj T, change func(T)) error {
	t.Helper()
	base := client.MergeFrom(obj.DeepCopyObject().(T))
	change(obj)
	return e2e.client.Patch(t.Context(), obj, base)
}

// scale sets the Deployment's replicas.
func scale(t *testing.T, d *appsv1.Deployment, n int32) {
	t.Helper()
	if err := patch(t, d, func(d *appsv1.Deployment) { d.Spec.Replicas = &n }); err != nil {
		t.Fatal(err)
	}
}

// podsOf lists the Deployment's Pods that are not being deleted.
func podsOf(t *testing.T, d *appsv1.Deployment) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := e2e.client.List(t.Context(), &list, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

// waitEvent waits for an Event with this reason regarding name and
// returns it.
func waitEvent(t *testing.T, ns, name, reason string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	webhooktest.Eventually(t, 15*time.Second, func() error {
		for _, e := range eventsWith(t, ns, reason) {
			if e.Regarding.Name == name {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s event regarding %s/%s", reason, ns, name)
	})
	return found
}

// eventsWith lists the namespace's Events with this reason.
func eventsWith(t *testing.T, ns, reason string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := e2e.client.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(e eventsv1.Event) bool { return e.Reason != reason })
}
