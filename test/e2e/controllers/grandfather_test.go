package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// admittedUnderAudit creates a Deployment of three Pods running the Go
// SDK image under an Audit policy with existingWorkloads e, waits until it
// is available, then switches the policy to Enforce.
func admittedUnderAudit(t *testing.T, e v1alpha1.ExistingWorkloads) (*appsv1.Deployment, *v1alpha1.SlimImagePolicy) {
	t.Helper()
	sel := map[string]string{"e2e.slimgate.dev/case": rand.String(8)}
	ns := namespace(t, sel)
	p := auditPolicy(t, e, sel)
	d := deployment(ns, "fat", e2e.reg.GoSDKApp(), 3)
	if err := e2e.client.Create(t.Context(), d); err != nil {
		t.Fatalf("audit refused the Deployment: %v", err)
	}
	waitRolledOut(t, d)
	if err := patch(t, p, func(p *v1alpha1.SlimImagePolicy) { p.Spec.Mode = v1alpha1.ModeEnforce }); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, p)
	return d, p
}

// A fat Deployment admitted under Audit keeps working once the policy
// enforces: it scales up, replaces a lost Pod and rolls out a restart,
// every Pod and ReplicaSet its controllers create is recorded as
// grandfathered, and nothing is hidden: a changed fat image is still
// refused at the Deployment, and a user's Pod that names the
// Deployment's ReplicaSet as its owner is refused and regarded itself.
func TestEnforceKeepsAdmittedDeployment(t *testing.T) {
	d, p := admittedUnderAudit(t, v1alpha1.ExistingWorkloadsKeep)
	before := grandfathered(t, p.Name)

	t.Run("scales 3 to 6", func(t *testing.T) {
		scale(t, d, 6)
		waitRolledOut(t, d)
	})
	t.Run("replaces a deleted Pod", func(t *testing.T) {
		pods := podsOf(t, d)
		gone := pods[0]
		if err := e2e.client.Delete(t.Context(), &gone); err != nil {
			t.Fatal(err)
		}
		webhooktest.Eventually(t, converge, func() error {
			now := podsOf(t, d)
			if slices.ContainsFunc(now, func(p corev1.Pod) bool { return p.Name == gone.Name }) || len(now) != 6 {
				return fmt.Errorf("%d Pods, %s among them: want 6 without it", len(now), gone.Name)
			}
			return nil
		})
		waitRolledOut(t, d)
	})
	t.Run("rollout restart", func(t *testing.T) {
		err := patch(t, d, func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": time.Now().Format(time.RFC3339)}
		})
		if err != nil {
			t.Fatal(err)
		}
		waitRolledOut(t, d)
		for _, pod := range podsOf(t, d) {
			if pod.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
				t.Errorf("Pod %s is of the old template", pod.Name)
			}
		}
	})
	t.Run("the decisions are recorded", func(t *testing.T) {
		// 3 Pods scaled up, 1 replaced, 6 rolled out and the new ReplicaSet.
		if n := grandfathered(t, p.Name) - before; n < 11 {
			t.Errorf("slimgate_decisions_total{verdict=grandfathered} grew by %v under Enforce, want at least 11", n)
		}
		ev := waitEvent(t, d.Namespace, d.Name, "ImageGrandfathered")
		if ev.Regarding.Kind != "Deployment" || ev.Regarding.UID != d.UID || ev.Related == nil || ev.Related.Name != p.Name || ev.Action != "Admit" {
			t.Errorf("event %+v", ev)
		}
		for _, want := range []string{"admitted as in the template of ", "toolchain.go", e2e.reg.GoSDKApp()} {
			if !strings.Contains(ev.Note, want) {
				t.Errorf("note lacks %q:\n%s", want, ev.Note)
			}
		}
		if rejected := eventsWith(t, d.Namespace, "ImageRejected"); len(rejected) > 0 {
			t.Errorf("refusals recorded: %v", rejected)
		}
	})
	t.Run("a changed fat image is refused at the Deployment", func(t *testing.T) {
		img, err := devcluster.GoSDKApp().Build(512, 0)
		if err != nil {
			t.Fatal(err)
		}
		changed := e2e.reg.Open + "/golang-app:2"
		if err := devcluster.Push(changed, img); err != nil {
			t.Fatal(err)
		}
		err = patch(t, d.DeepCopy(), func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = changed })
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "spec.template.spec.containers[0].image") ||
			!strings.Contains(err.Error(), "toolchain.go") {
			t.Fatalf("changing the image: %v, want the webhook's refusal", err)
		}
	})
	t.Run("a user's Pod naming the ReplicaSet as owner is refused", func(t *testing.T) {
		rs := currentReplicaSet(t, d)
		yes := true
		forged := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: "forged", Labels: map[string]string{"forged": "yes"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}},
			Spec: *rs.Spec.Template.Spec.DeepCopy(),
		}
		err := e2e.client.Create(t.Context(), forged)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "toolchain.go") {
			t.Fatalf("the forged Pod: %v, want the webhook's refusal", err)
		}
		ev := waitEvent(t, d.Namespace, "forged", "ImageRejected")
		if ev.Regarding.Kind != "Pod" || ev.Regarding.Name != "forged" {
			t.Errorf("the refusal regards %s %s, want the Pod", ev.Regarding.Kind, ev.Regarding.Name)
		}
	})
	waitRolledOut(t, d)
}

// Without the rule (existingWorkloads Judge, today's behaviour) the same
// Deployment cannot scale once the policy enforces: its ReplicaSet's Pod
// CREATEs are refused (ReplicaFailure, FailedCreate).
func TestEnforceJudgeBreaksAdmittedDeployment(t *testing.T) {
	d, _ := admittedUnderAudit(t, v1alpha1.ExistingWorkloadsJudge)
	scale(t, d, 6)
	webhooktest.Eventually(t, converge, func() error {
		if err := e2e.client.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue && c.Reason == "FailedCreate" {
				return nil
			}
		}
		return fmt.Errorf("no ReplicaFailure yet: %v", conditions(d))
	})
	if d.Status.AvailableReplicas != 3 || rolledOut(d) == nil {
		t.Errorf("status %+v, want 3 available and not rolled out", d.Status)
	}
	ev := waitEvent(t, d.Namespace, d.Name, "ImageRejected")
	if ev.Regarding.Kind != "Deployment" || ev.Regarding.UID != d.UID {
		t.Errorf("the controller's refused Pod is regarded as %s %s, want the Deployment", ev.Regarding.Kind, ev.Regarding.Name)
	}
}

// currentReplicaSet returns the Deployment's ReplicaSet with replicas.
func currentReplicaSet(t *testing.T, d *appsv1.Deployment) *appsv1.ReplicaSet {
	t.Helper()
	var list appsv1.ReplicaSetList
	if err := e2e.client.List(t.Context(), &list, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		if rs := &list.Items[i]; rs.Spec.Replicas != nil && *rs.Spec.Replicas > 0 {
			return rs
		}
	}
	t.Fatalf("no ReplicaSet of %s with replicas among %d", d.Name, len(list.Items))
	return nil
}

// grandfathered reads slimgate_decisions_total{policy,mode="Enforce",
// verdict="grandfathered"} from the in-process webhook's registry.
func grandfathered(t *testing.T, policy string) float64 {
	t.Helper()
	return metricValue(t, "slimgate_decisions_total", map[string]string{"policy": policy, "mode": "Enforce", "verdict": "grandfathered"})
}
