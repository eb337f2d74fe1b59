package controller

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/events"
)

// judged is a JudgeFunc that counts its calls: under an Audit policy a
// Pod's "fat" images have findings, the others none.
type judged struct {
	mu    sync.Mutex
	calls map[string]int
}

func (j *judged) judge(_ context.Context, pod *corev1.Pod) ([]events.Decision, error) {
	j.mu.Lock()
	if j.calls == nil {
		j.calls = map[string]int{}
	}
	j.calls[pod.Name]++
	j.mu.Unlock()
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "audit", UID: "uid-audit"}, Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeAudit}}
	d := events.Decision{Object: pod, Kind: corev1.SchemeGroupVersion.WithKind("Pod"), Policy: p, Verdict: "allow", Action: events.ActionAdmit}
	for _, c := range pod.Spec.Containers {
		if strings.HasPrefix(c.Image, "fat") {
			d.Reason = events.ReasonAudited
			d.Images = append(d.Images, events.ImageNote{Image: c.Image, Reason: events.ReasonAudited, Note: c.Image + " ships a compiler"})
		}
	}
	return []events.Decision{d}, nil
}

func created(name, ns string, age time.Duration, images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(time.Now().Add(-age).Truncate(time.Second))}}
	for _, im := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: im, Image: im})
	}
	return p
}

// publishedRecord is another replica's record, complete since since,
// holding uids in one chunk published at at.
func publishedRecord(t *testing.T, name string, since, at time.Time, uids ...string) *corev1.ConfigMap {
	t.Helper()
	var keys []uidKey
	for _, u := range uids {
		keys = append(keys, keyOf(types.UID(u)))
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "slimgate-system", Name: ReviewsPrefix + name, Labels: map[string]string{ReviewsLabel: "true"},
			Annotations: map[string]string{annotationSince: since.Format(time.RFC3339Nano), annotationUntil: at.Format(time.RFC3339Nano)}},
		BinaryData: map[string][]byte{chunkPrefix + strconv.FormatInt(at.UnixMilli(), 10): joinKeys(keys)},
	}
}

// replica is one webhook replica's controller, with a review log of its
// own, over a shared cluster.
func replica(t *testing.T, c client.Client, j *judged, reviewed ...string) *UnreviewedPodReconciler {
	t.Helper()
	rec, err := events.NewRecorder(events.Options{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	l := NewReviewLog(100)
	l.since = l.since.Add(-time.Hour) // this replica has run for a while
	l.start = l.since
	for _, uid := range reviewed {
		l.Reviewed(podWithUID(uid))
	}
	r := &UnreviewedPodReconciler{Client: c, API: c, Log: l, Judge: j.judge, Events: rec, Namespace: "slimgate-system",
		WebhookConfigName: "slimgate", Delay: 5 * time.Second, Window: 10 * time.Minute}
	if err := r.init(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	return r
}

func counted(t *testing.T, rs ...*UnreviewedPodReconciler) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range rs {
		ch := make(chan prometheus.Metric, 10)
		r.unreviewed.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				t.Fatal(err)
			}
			var labels []string
			for _, l := range d.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			out[strings.Join(labels, "/")] += d.GetCounter().GetValue()
		}
	}
	return out
}

// Of the Pods created lately in namespaces the webhook reviews, those no
// replica's record holds are judged and recorded once, whichever replica
// finds them; reviewed ones, ones too young to tell, ones older than the
// records and ones in namespaces the webhook leaves out are not.
func TestUnreviewedPods(t *testing.T) {
	now := time.Now()
	pods := []*corev1.Pod{
		created("mine", "team", time.Minute, "fat:1"),   // reviewed by replica a
		created("theirs", "team", time.Minute, "fat:1"), // reviewed by a replica that published it
		created("missed", "team", time.Minute, "fat:1", "fat:2", "slim:1"),
		created("missed-clean", "team", time.Minute, "slim:1"),
		created("young", "team", time.Second, "fat:1"),         // not yet published, maybe
		created("before", "team", 20*time.Minute, "fat:1"),     // before any record
		created("system", "kube-system", time.Minute, "fat:1"), // never sent to review
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{corev1.LabelMetadataName: "team"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", Labels: map[string]string{corev1.LabelMetadataName: "kube-system"}}},
		publishedRecord(t, "other", now.Add(-5*time.Minute), now.Add(-50*time.Second), "uid-theirs"),
	}
	for _, p := range pods {
		objs = append(objs, p)
	}
	c := newFakeClient(t, objs...)
	j := &judged{}
	a, b := replica(t, c, j, "uid-mine"), replica(t, c, j)
	// a publishes its review of mine for b.
	if err := (&ReviewPublisher{Log: a.Log, Client: c, Reader: c, Namespace: "slimgate-system", Name: ReviewsPrefix + "a"}).publish(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*UnreviewedPodReconciler{a, b} {
		for _, p := range pods {
			res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)})
			if err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			if young := p.Name == "young"; young != (res.RequeueAfter > 0) || res.RequeueAfter > 5*time.Second {
				t.Errorf("%s: requeued after %v", p.Name, res.RequeueAfter)
			}
		}
	}
	if j.calls["missed"] != 2 || j.calls["missed-clean"] != 2 || len(j.calls) != 2 {
		t.Errorf("judged %v, want missed and missed-clean once by each replica", j.calls)
	}
	if got := counted(t, a, b); len(got) != 2 || got["audit/"+events.ReasonAudited] != 1 || got["audit/"+NoFindings] != 1 {
		t.Errorf("slimgate_unreviewed_total over both replicas: %v; want one per Pod", got)
	}
	var list eventsv1.EventList
	if err := c.List(context.Background(), &list, client.InNamespace("team")); err != nil {
		t.Fatal(err)
	}
	byPod := map[string][]string{}
	for _, e := range list.Items {
		if e.Reason != events.ReasonUnreviewed || e.Regarding.Kind != "Pod" || e.Regarding.UID != types.UID("uid-"+e.Regarding.Name) {
			t.Errorf("event %+v", e)
		}
		byPod[e.Regarding.Name] = append(byPod[e.Regarding.Name], e.Note)
	}
	if len(byPod) != 2 || len(byPod["missed"]) != 2 || len(byPod["missed-clean"]) != 1 {
		t.Fatalf("events by Pod: %v; want one per finding image of missed, one for missed-clean", byPod)
	}
	for _, n := range byPod["missed"] {
		if !strings.Contains(n, "Created without a review") || !strings.Contains(n, "would have admitted this image and recorded") || !strings.Contains(n, "ships a compiler") {
			t.Errorf("note: %s", n)
		}
	}
	if n := byPod["missed-clean"][0]; !strings.Contains(n, "finds nothing in slim:1") {
		t.Errorf("note: %s", n)
	}
}

// The webhook configuration, when readable, says which namespaces' Pods
// are reviewed: a Pod in a namespace its selector leaves out is not
// unreviewed.
func TestUnreviewedPodsFollowTheWebhookConfiguration(t *testing.T) {
	optIn := map[string]string{"slimgate.dev/enabled": "true"}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "slimgate"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "pods.slimgate.dev", NamespaceSelector: &metav1.LabelSelector{MatchLabels: optIn},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}}}}
	pods := []*corev1.Pod{created("in", "opted", time.Minute, "fat:1"), created("out", "plain", time.Minute, "fat:1")}
	c := newFakeClient(t, vwc, pods[0], pods[1],
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "opted", Labels: optIn}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}})
	j := &judged{}
	r := replica(t, c, j)
	for _, p := range pods {
		if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)}); err != nil {
			t.Fatal(err)
		}
	}
	if j.calls["in"] != 1 || len(j.calls) != 1 {
		t.Errorf("judged %v, want only the Pod in the opted-in namespace", j.calls)
	}
}

// Under failurePolicy Fail the API server admits no Pod its webhook did not
// review: a Pod the records miss (the replica that reviewed it was killed
// before it published) is not one that "got in while the webhook could
// not be reached", and is not judged or recorded as such. Under Ignore it
// is.
func TestUnreviewedPodsOnlyUnderFailurePolicyIgnore(t *testing.T) {
	for _, policy := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail, admissionregistrationv1.Ignore} {
		t.Run(string(policy), func(t *testing.T) {
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "slimgate"},
				Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "pods.slimgate.dev", FailurePolicy: &policy,
					Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}}}}
			pod := created("missed", "team", time.Minute, "fat:1")
			c := newFakeClient(t, vwc, pod, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}})
			j := &judged{}
			r := replica(t, c, j)
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pod)}); err != nil {
				t.Fatal(err)
			}
			want := 0
			if policy == admissionregistrationv1.Ignore {
				want = 1
			}
			if j.calls["missed"] != want {
				t.Errorf("judged %d times under failurePolicy %s, want %d", j.calls["missed"], policy, want)
			}
			if got := counted(t, r); len(got) != want {
				t.Errorf("slimgate_unreviewed_total %v under failurePolicy %s", got, policy)
			}
		})
	}
}
