package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The harness itself: kube-controller-manager turns a Deployment into a
// ReplicaSet and Pods, the stand-in kubelet makes them available, and the
// controllers act under their own service accounts.
func TestHarnessRollsOutADeployment(t *testing.T) {
	ns := namespace(t, nil)
	d := deployment(ns, "web", e2e.reg.StaticApp(), 3)
	if err := e2e.client.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, d)
	for _, name := range []string{"deployment-controller", "replicaset-controller"} {
		var sa corev1.ServiceAccount
		if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: "kube-system", Name: name}, &sa); err != nil {
			t.Errorf("service account of the %s: %v", name, err)
		}
	}
}
