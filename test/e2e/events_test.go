package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	slimevents "slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/registry"
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

// imageEvents waits until the Events with reason regarding kind/name in
// ns are one per image of want, each naming its image, counting count
// decisions each, and returns them by image.
func imageEvents(t *testing.T, ns, kind, name, reason string, want []string, count int32) map[string]eventsv1.Event {
	t.Helper()
	var byImage map[string]eventsv1.Event
	eventually(t, time.Minute, func() error {
		evs, err := events(ns, name)
		if err != nil {
			return err
		}
		byImage = map[string]eventsv1.Event{}
		n := 0
		for _, e := range evs {
			if e.Regarding.Kind != kind || e.Reason != reason {
				continue
			}
			n++
			var named []string
			for _, ref := range want {
				if strings.Contains(e.Note, shown(ref)) {
					named = append(named, ref)
				}
			}
			if len(named) != 1 {
				return fmt.Errorf("an Event names %d of the images, want 1: %q", len(named), e.Note)
			}
			if _, dup := byImage[named[0]]; dup {
				return fmt.Errorf("two Events name %s", named[0])
			}
			byImage[named[0]] = e
		}
		if n != len(want) || len(byImage) != len(want) {
			return fmt.Errorf("%d %s Events regarding %s %s/%s name %d images, want one per image, %d", n, reason, kind, ns, name, len(byImage), len(want))
		}
		for ref, e := range byImage {
			if got := seriesCount(e.Series); got != count {
				return fmt.Errorf("the Event on %s counts %d decisions, want %d", ref, got, count)
			}
		}
		return nil
	})
	return byImage
}

// shown is how much of a reference an Event note shows: its first 200
// bytes at least (longer ones are cut).
func shown(ref string) string { return ref[:min(len(ref), 200)] }

// Every image of a 9-container StatefulSet under an Audit policy gets an
// Event of its own regarding the StatefulSet, naming it: none is lost to
// the 1 KiB note of one Event. When the same images are judged again (an
// UPDATE back to them), each Event counts two decisions, and no other
// Event appears.
func TestEveryImageOfAManyContainerWorkloadHasItsEvent(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeAudit, caseLabels(t)))
	repo := "many-" + rand.String(5)
	var fat []string
	var containers []corev1.Container
	for i := range 9 {
		ref, _ := pushSDK(t, fmt.Sprintf("%s-%d", repo, i))
		fat = append(fat, ref)
		containers = append(containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: ref})
	}
	labels := map[string]string{"app": "many"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "many"}, Spec: appsv1.StatefulSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: containers}},
	}}
	if _, err := create(t, sts); err != nil {
		t.Fatal(err)
	}
	first := imageEvents(t, ns, "StatefulSet", sts.Name, slimevents.ReasonAudited, fat, 1)
	for ref, e := range first {
		if e.Regarding.UID != sts.UID || e.Related == nil || e.Related.Kind != "SlimImagePolicy" || len(e.Note) > slimevents.MaxNote {
			t.Errorf("the Event on %s regards %s (uid %s), related %v, a %d-byte note", ref, e.Regarding.Name, e.Regarding.UID, e.Related, len(e.Note))
		}
	}

	// Slim images (nothing to record), then the fat ones again: the same
	// decisions on the same StatefulSet.
	for _, images := range [][]string{nil, fat} {
		for i := range sts.Spec.Template.Spec.Containers {
			img := e2e.reg.StaticApp()
			if images != nil {
				img = images[i]
			}
			sts.Spec.Template.Spec.Containers[i].Image = img
		}
		if err := e2e.client.Update(context.Background(), sts); err != nil {
			t.Fatal(err)
		}
	}
	again := imageEvents(t, ns, "StatefulSet", sts.Name, slimevents.ReasonAudited, fat, 2)
	for ref, e := range again {
		if e.Name != first[ref].Name {
			t.Errorf("the second decision on %s made Event %s, not counted on %s", ref, e.Name, first[ref].Name)
		}
	}
}

// The longest image reference slimgate reads (registry.MaxReferenceBytes,
// and invalid: a repository name that long does not parse) gets its own
// Event, whose note names the image and stays within the API's limit, next
// to the Event of the Pod's other image.
func TestEventNoteOfTheLongestReference(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeAudit, caseLabels(t)))
	prefix := e2e.reg.Open + "/hostile-" + rand.String(5) + "/"
	long := prefix + strings.Repeat("a", registry.MaxReferenceBytes-len(prefix)-len(":1")) + ":1"
	if len(long) != registry.MaxReferenceBytes {
		t.Fatalf("reference of %d bytes, want %d", len(long), registry.MaxReferenceBytes)
	}
	p := pod(ns, "hostile", e2e.reg.GoSDKApp())
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "long", Image: long})
	if _, err := create(t, p); err != nil {
		t.Fatal(err)
	}
	evs := imageEvents(t, ns, "Pod", p.Name, slimevents.ReasonAudited, []string{e2e.reg.GoSDKApp(), long}, 1)
	note := evs[long].Note
	if len(note) > slimevents.MaxNote || !strings.Contains(note, "inspection.invalid") || !strings.Contains(note, shown(long)) {
		t.Errorf("the long reference's Event: a %d-byte note (at most %d), want it naming the image and inspection.invalid:\n%s", len(note), slimevents.MaxNote, note)
	}
}
