package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
	slimevents "slimgate.dev/slimgate/pkg/events"
)

// Pods created while the webhook is down are admitted unreviewed
// (failurePolicy Ignore). Once it is back, it finds them, records each
// with an ImageUnreviewed Event regarding the Pod that says what the
// review would have found, and counts them; Pods reviewed before the stop
// (by the webhook process that is gone, whose record it reads) and after
// the restart get no such Event.
func TestUnreviewedPodsAreFoundAfterAnOutage(t *testing.T) {
	ctx := context.Background()
	// The release namespace, where each webhook process publishes the
	// reviews it made.
	release := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app.DefaultNamespace}}
	if err := e2e.client.Create(ctx, release); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns := namespace(t, caseLabels(t))
	p := policy(t, spec(v1alpha1.ModeAudit, caseLabels(t)))
	before := unreviewedCount(t, p.Name)

	reviewedBefore := pod(ns, "reviewed-before", e2e.reg.GoSDKApp())
	if _, err := create(t, reviewedBefore); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, reviewedBefore.Name, slimevents.ReasonAudited)
	// The webhook's record, published, holds that review.
	published := time.Now()
	eventually(t, 15*time.Second, func() error { return recordWrittenAfter(published) })

	if err := e2e.Webhook.Stop(webhooktest.StopWithin); err != nil {
		t.Fatalf("stopping the webhook: %v", err)
	}
	stopped := time.Now()
	var missed []*corev1.Pod
	for i := range 5 {
		p := pod(ns, fmt.Sprint("missed-", i), e2e.reg.GoSDKApp())
		if i%2 == 1 {
			p.Name, p.GenerateName = "", "missed-"
		}
		warnings, err := create(t, p)
		if err != nil || len(warnings) != 0 {
			t.Fatalf("creating %s with the webhook down: %v, warnings %q", p.Name, err, warnings)
		}
		missed = append(missed, p)
	}
	restarted := time.Now()
	var err error
	if e2e.Webhook, err = webhooktest.Run(ctx, e2e.WebhookOptions); err != nil {
		t.Fatalf("restarting the webhook: %v", err)
	}
	t.Logf("webhook down for %s (%s of it starting again)", time.Since(stopped).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	reviewedAfter := pod(ns, "reviewed-after", e2e.reg.GoSDKApp())
	if _, err := create(t, reviewedAfter); err != nil {
		t.Fatal(err)
	}

	for _, m := range missed {
		ev := waitUnreviewed(t, ns, m.Name, time.Minute)
		if ev.Regarding.Kind != "Pod" || ev.Regarding.UID != m.UID || ev.Related == nil || ev.Related.Name != p.Name {
			t.Errorf("event on %s regards %+v, related %+v", m.Name, ev.Regarding, ev.Related)
		}
		for _, want := range []string{"without a review", "would have admitted this image and recorded", e2e.reg.GoSDKApp(), "toolchain.go"} {
			if !strings.Contains(ev.Note, want) {
				t.Errorf("note on %s lacks %q:\n%s", m.Name, want, ev.Note)
			}
		}
	}
	t.Logf("all 5 unreviewed Pods recorded %s after the restart", time.Since(restarted).Round(time.Second))
	if got := unreviewedCount(t, p.Name) - before; got != 5 {
		t.Errorf("slimgate_unreviewed_total{policy=%s,reason=ImageAudited} rose by %v, want 5", p.Name, got)
	}

	// Reviewed Pods: by now (a Pod is looked up 15 s after its creation)
	// an Event would be there.
	time.Sleep(time.Until(reviewedAfter.CreationTimestamp.Add(controller.DefaultUnreviewedDelay + 3*time.Second)))
	for _, name := range []string{reviewedBefore.Name, reviewedAfter.Name} {
		evs, err := events(ns, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Reason == slimevents.ReasonUnreviewed {
				t.Errorf("reviewed Pod %s recorded as unreviewed: %s", name, e.Note)
			}
		}
	}
}

// recordWrittenAfter checks a webhook process published its reviews after
// t.
func recordWrittenAfter(t time.Time) error {
	var list corev1.ConfigMapList
	if err := e2e.client.List(context.Background(), &list, client.InNamespace(app.DefaultNamespace),
		client.MatchingLabels{controller.ReviewsLabel: "true"}); err != nil {
		return err
	}
	for _, cm := range list.Items {
		until, err := time.Parse(time.RFC3339Nano, cm.Annotations["slimgate.dev/reviews-until"])
		if err == nil && until.After(t) {
			return nil
		}
	}
	return fmt.Errorf("no review record written after %s among %d", t.Format(time.RFC3339Nano), len(list.Items))
}

// waitUnreviewed waits for the ImageUnreviewed Event regarding Pod name.
func waitUnreviewed(t *testing.T, ns, name string, within time.Duration) (found eventsv1.Event) {
	t.Helper()
	eventually(t, within, func() error {
		evs, err := events(ns, name)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Reason == slimevents.ReasonUnreviewed {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s event regarding %s/%s among %d", slimevents.ReasonUnreviewed, ns, name, len(evs))
	})
	return found
}

// unreviewedCount reads slimgate_unreviewed_total{policy,reason=ImageAudited}
// from the registry the suite's webhook registers with.
func unreviewedCount(t *testing.T, policy string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "slimgate_unreviewed_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "policy") == policy && label(m, "reason") == slimevents.ReasonAudited {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
