package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// A bare Pod that names a controller it was not made by is judged as the
// Pod it is, and its Event regards that Pod: never the healthy ReplicaSet
// (or its Deployment) the requester wrote into its ownerReferences, nor a
// ReplicaSet or Job that does not exist.
func TestEventRegardsTheCreatedPodNotAForgedOwner(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	rs := replicaSetOfDeployment(t, ns, e2e.reg.StaticApp())

	forged := pod(ns, "forged", e2e.reg.GoSDKApp())
	controlledBy(forged, "apps/v1", "ReplicaSet", rs.Name, rs.UID)
	_, err := create(t, forged)
	mustDeny(t, err, e2e.reg.GoSDKApp())
	for _, owner := range []struct{ apiVersion, kind, name string }{{"apps/v1", "ReplicaSet", "ghost"}, {"batch/v1", "Job", "ghost-job"}} {
		ghost := pod(ns, owner.name+"-child", e2e.reg.GoSDKApp())
		controlledBy(ghost, owner.apiVersion, owner.kind, owner.name, types.UID("4a3e7b8c-0000-4000-8000-000000000000"))
		_, err = create(t, ghost)
		mustDeny(t, err, e2e.reg.GoSDKApp())
	}

	for _, name := range []string{"forged", "ghost-child", "ghost-job-child"} {
		ev := waitEvent(t, ns, name, "ImageRejected")
		if ev.Regarding.Kind != "Pod" || ev.Regarding.APIVersion != "v1" {
			t.Errorf("event on %s regards %s %s", name, ev.Regarding.APIVersion, ev.Regarding.Kind)
		}
	}
	// Events are written in order: the Pods' are there, so any on the
	// owners would be too.
	var list eventsv1.EventList
	if err := e2e.client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Kind != "Pod" {
			t.Errorf("an Event regards %s %s/%s (%s): %s", e.Regarding.Kind, ns, e.Regarding.Name, e.Reason, e.Note)
		}
	}
}

// A Pod created with only generateName is reviewed under the name and UID
// the API server generated: its Event regards that very Pod, so that
// `kubectl describe pod` shows it.
func TestEventRegardsTheGeneratedPod(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeAudit, caseLabels(t)))
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "batch-"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: e2e.reg.GoSDKApp()}}}}
	if _, err := create(t, p); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ns, p.Name, "ImageAudited")
	if ev.Regarding.Kind != "Pod" || ev.Regarding.UID != p.UID {
		t.Errorf("event regards %s %s (uid %s), want Pod %s (uid %s)", ev.Regarding.Kind, ev.Regarding.Name, ev.Regarding.UID, p.Name, p.UID)
	}
}

// Repeated decisions on one object and image make one Event whose count
// is right within a minute, as both the events.k8s.io and the core/v1
// (kubectl get events) views show it.
func TestEventCountIsRightWithinAMinute(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	const attempts = 52
	start := time.Now()
	for range attempts {
		_, err := create(t, pod(ns, "fat", e2e.reg.GoSDKApp()))
		mustDeny(t, err, e2e.reg.GoSDKApp())
	}
	sent := time.Since(start)
	eventually(t, time.Minute, func() error {
		evs, err := events(ns, "fat")
		if err != nil {
			return err
		}
		if len(evs) != 1 {
			return fmt.Errorf("%d events regard Pod fat, want 1", len(evs))
		}
		if got := seriesCount(evs[0].Series); got != attempts {
			return fmt.Errorf("event count %d, want %d", got, attempts)
		}
		return nil
	})
	t.Logf("%d denials sent in %s; the Event counted them all %s after the first", attempts, sent.Round(time.Millisecond), time.Since(start).Round(time.Second))

	var core corev1.EventList
	if err := e2e.client.List(context.Background(), &core, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(core.Items) != 1 || core.Items[0].Series == nil || core.Items[0].Series.Count != attempts {
		t.Errorf("core/v1 view: %d events, first %+v; want one with series count %d", len(core.Items), core.Items, attempts)
	}
}

// seriesCount is how many times an Event says it happened.
func seriesCount(s *eventsv1.EventSeries) int32 {
	if s == nil {
		return 1
	}
	return s.Count
}
