package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
)

// A 50-replica Deployment of a fat image rolls out under Audit. Every
// decision on it (its own CREATE, the ReplicaSet's and the 50 Pods') is
// counted on one Event per reason regarding the Deployment, and the count
// is right within a minute of the Deployment's creation: under
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
			policy(t, v1alpha1.ModeAudit, c.e, sel)
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
			eventually(t, time.Minute, func() error {
				got, err := countsOn(t, ns, "Deployment", d.Name)
				if err != nil {
					return err
				}
				if !maps.Equal(got, c.want) {
					return fmt.Errorf("event counts on Deployment %s: %v, want %v", d.Name, got, c.want)
				}
				return nil
			})
			t.Logf("event counts right %s after the Deployment's creation", time.Since(start).Round(100*time.Millisecond))
			waitRolledOut(t, d)

			counts := e2e.webhookRequests.Take()
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

// countsOn returns, per reason, the count of the Event regarding the
// object of this kind and name; an error when a reason has more than one
// Event there.
func countsOn(t *testing.T, ns, kind, name string) (map[string]int32, error) {
	t.Helper()
	out := map[string]int32{}
	for _, reason := range []string{"ImageAudited", "ImageGrandfathered", "ImageRejected", "ImageWarned"} {
		var on []eventsv1.Event
		for _, e := range eventsWith(t, ns, reason) {
			if e.Regarding.Kind == kind && e.Regarding.Name == name {
				on = append(on, e)
			}
		}
		switch len(on) {
		case 0:
		case 1:
			out[reason] = 1
			if s := on[0].Series; s != nil {
				out[reason] = s.Count
			}
		default:
			return nil, fmt.Errorf("%d %s Events regard %s %s, want one", len(on), reason, kind, name)
		}
	}
	return out, nil
}
