package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// A 50-replica Deployment of a fat image rolls out under Audit. Every
// decision on it (its own CREATE, the ReplicaSet's and the 50 Pods') is
// counted on one Event per reason regarding the Deployment (see
// decisionsOn for the early Pod whose owner the webhook's cache does not
// hold yet), and the count is right within a minute of the last decision
// (the rollout's end): under
// existingWorkloads Keep the controllers' ReplicaSet and Pods are
// ImageGrandfathered, under Judge ImageAudited like the Deployment (the 52
// decisions of issue 10). Once warm, the webhook reads nothing from the
// API server to review them: policies, namespaces, service accounts and
// the owners it verifies all come from its informer caches.
func TestAuditRolloutOf50(t *testing.T) {
	const replicas = 50
	for _, c := range []struct {
		e    v1alpha1.ExistingWorkloads
		want map[string]int32 // Event reason: count
	}{
		{v1alpha1.ExistingWorkloadsKeep, map[string]int32{"ImageAudited": 1, "ImageGrandfathered": replicas + 1}},
		{v1alpha1.ExistingWorkloadsJudge, map[string]int32{"ImageAudited": replicas + 2}},
	} {
		t.Run(string(c.e), func(t *testing.T) {
			sel := map[string]string{"e2e.slimgate.dev/case": rand.String(8)}
			ns := namespace(t, sel)
			auditPolicy(t, c.e, sel)
			// Warm-up: the image's facts, the namespace's service
			// account and the owner informers.
			warm := deployment(ns, "warm", e2e.reg.GoSDKApp(), 1)
			if err := e2e.client.Create(t.Context(), warm); err != nil {
				t.Fatal(err)
			}
			waitRolledOut(t, warm)
			e2e.webhookRequests.Take()

			d := deployment(ns, "fat", e2e.reg.GoSDKApp(), replicas)
			start := time.Now()
			if err := e2e.client.Create(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			// The count must be right within a minute of the last
			// decision, the last Pod's review: how long the controllers
			// take to create 50 Pods depends on the machine's load.
			waitRolledOut(t, d)
			rolledOut := time.Now()
			webhooktest.Eventually(t, time.Minute, func() error {
				got, err := decisionsOn(t, ns, d.Name)
				if err != nil {
					return err
				}
				if !maps.Equal(got, c.want) {
					return fmt.Errorf("decisions counted on the Events of Deployment %s and its children: %v, want %v", d.Name, got, c.want)
				}
				return nil
			})
			t.Logf("event counts right %s after the Deployment's creation, %s after its rollout",
				time.Since(start).Round(100*time.Millisecond), time.Since(rolledOut).Round(100*time.Millisecond))

			counts := e2e.webhookRequests.Take()
			// The background scan's own requests (its Lease, the Reports
			// it compares) are not the reviews'.
			maps.DeleteFunc(counts, func(req string, _ int) bool {
				return strings.Contains(req, "/leases/"+controller.DefaultScanLease) || strings.Contains(req, "/openreports.io/")
			})
			var reads []string
			writes := 0
			for req, n := range counts {
				if strings.HasPrefix(req, "GET ") {
					reads = append(reads, fmt.Sprintf("%4d %s", n, req))
				} else if strings.Contains(req, "/events") {
					writes += n
				}
			}
			slices.Sort(reads)
			if writes == 0 {
				t.Fatalf("no Event write counted among %v: the counter does not see the webhook's requests", counts)
			}
			n := devcluster.Reads(counts)
			t.Logf("webhook API requests during the rollout: %d reads (%.2f per Pod review), %d Event writes", n, float64(n)/replicas, writes)
			if n != 0 {
				t.Errorf("the webhook read from the API server %d times while reviewing %d Pods, want none:\n%s", n, replicas, strings.Join(reads, "\n"))
			}
		})
	}
}

// decisionsOn returns, per reason, the decisions counted on the Events of
// Deployment name and of its ReplicaSets and Pods (named name-...): a
// Pod's review regards the Deployment once its owner is verified from the
// webhook's cache, and under existingWorkloads Judge the review does not
// wait for a cache that lags, so under load an early Pod's Event may
// regard the Pod itself. An error when a reason has more than one Event
// on one object: counts must aggregate.
func decisionsOn(t *testing.T, ns, name string) (map[string]int32, error) {
	t.Helper()
	out := map[string]int32{}
	for _, reason := range []string{"ImageAudited", "ImageGrandfathered", "ImageRejected", "ImageWarned"} {
		seen := map[string]bool{}
		for _, e := range eventsWith(t, ns, reason) {
			r := e.Regarding
			ours := r.Kind == "Deployment" && r.Name == name ||
				(r.Kind == "ReplicaSet" || r.Kind == "Pod") && strings.HasPrefix(r.Name, name+"-")
			if !ours {
				continue
			}
			key := r.Kind + "/" + r.Name
			if seen[key] {
				return nil, fmt.Errorf("several %s Events regard %s, want one", reason, key)
			}
			seen[key] = true
			out[reason]++
			if e.Series != nil {
				out[reason] += e.Series.Count - 1
			}
		}
	}
	return out, nil
}

// outage is how long the webhook stays down.
const outage = 2500 * time.Millisecond

// The webhook stops for 2.5 s while a Deployment rolls out a restart:
// failurePolicy Ignore lets the controllers' Pods in unreviewed. Once the
// webhook is back, it finds every Pod created while it was down and
// records it (an ImageUnreviewed Event regarding the Pod, saying what the
// review would have decided, and slimgate_unreviewed_total), and none of
// the Pods it reviewed before or after. The review would have
// grandfathered them (existingWorkloads Keep: the ReplicaSet controller's
// Pods with the template's image), and that is what the record says.
func TestOutageDuringRolloutIsRecorded(t *testing.T) {
	sel := map[string]string{"e2e.slimgate.dev/case": rand.String(8)}
	ns := namespace(t, sel)
	p := auditPolicy(t, v1alpha1.ExistingWorkloadsKeep, sel)
	d := deployment(ns, "fat", e2e.reg.GoSDKApp(), 10)
	if err := e2e.client.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, d)
	reviewed := names(podsOf(t, d))

	stopped := time.Now()
	switch err := e2e.Webhook.Stop(webhooktest.StopWithin); {
	case errors.Is(err, devcluster.ErrNotStopped):
		t.Fatalf("stopping the webhook: %v", err)
	case err != nil:
		// Its server waited beyond the suite's grace period for
		// connections the API server opened and has not used yet
		// (net/http gives them 5 s); Run has returned all the same.
		t.Logf("the webhook stopped: %v", err)
	}
	err := patch(t, d, func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": time.Now().Format(time.RFC3339)}
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(stopped.Add(outage)))
	// Every Pod there now was created with the webhook down.
	missed := without(names(podsOf(t, d)), reviewed)
	// It outlives the test: the suite stops it.
	if e2e.Webhook, err = webhooktest.Run(context.Background(), e2e.WebhookOptions); err != nil {
		t.Fatalf("running the webhook again: %v", err)
	}
	t.Logf("webhook down for %s; %d Pods created meanwhile", time.Since(stopped).Round(100*time.Millisecond), len(missed))
	if len(missed) == 0 {
		t.Fatal("no Pod was created while the webhook was down")
	}
	seen := names(podsOf(t, d))
	waitRolledOut(t, d)
	scale(t, d, 13)
	waitRolledOut(t, d)
	after := without(names(podsOf(t, d)), seen)
	if len(after) == 0 {
		t.Fatal("no Pod created after the webhook was back")
	}

	for name := range missed {
		ev := waitUnreviewed(t, ns, name)
		if ev.Regarding.Kind != "Pod" || ev.Related == nil || ev.Related.Name != p.Name {
			t.Errorf("event on %s regards %+v, related %+v", name, ev.Regarding, ev.Related)
		}
		for _, want := range []string{"without a review", "grandfathered with its owner Deployment " + d.Name, "(ImageGrandfathered)",
			"in the template of ReplicaSet " + d.Name + "-", e2e.reg.GoSDKApp(), "toolchain.go"} {
			if !strings.Contains(ev.Note, want) {
				t.Errorf("note on %s lacks %q:\n%s", name, want, ev.Note)
			}
		}
	}
	// The webhook run again counts from 0; Pods created after the list
	// above and before it was ready count too.
	if got := metricValue(t, "slimgate_unreviewed_total", map[string]string{"policy": p.Name, "reason": "ImageGrandfathered"}); int(got) < len(missed) {
		t.Errorf("slimgate_unreviewed_total{policy=%s} = %v, want at least %d", p.Name, got, len(missed))
	}

	// A reviewed Pod is looked up 15 s after its creation: by then an
	// Event would be there.
	time.Sleep(controller.DefaultUnreviewedDelay + 5*time.Second)
	for _, e := range eventsWith(t, ns, "ImageUnreviewed") {
		if reviewed[e.Regarding.Name] || after[e.Regarding.Name] {
			t.Errorf("reviewed Pod %s recorded as unreviewed", e.Regarding.Name)
		}
	}
}

// waitUnreviewed waits for the ImageUnreviewed Event regarding Pod name.
func waitUnreviewed(t *testing.T, ns, name string) (found eventsv1.Event) {
	t.Helper()
	webhooktest.Eventually(t, time.Minute, func() error {
		for _, e := range eventsWith(t, ns, "ImageUnreviewed") {
			if e.Regarding.Kind == "Pod" && e.Regarding.Name == name {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no ImageUnreviewed event regarding Pod %s/%s", ns, name)
	})
	return found
}

// names is the set of the Pods' names.
func names(pods []corev1.Pod) map[string]bool {
	out := make(map[string]bool, len(pods))
	for _, p := range pods {
		out[p.Name] = true
	}
	return out
}

// without returns the names of a that are not in b.
func without(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for n := range a {
		if !b[n] {
			out[n] = true
		}
	}
	return out
}
