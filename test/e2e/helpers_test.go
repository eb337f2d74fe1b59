package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// caseLabel marks the namespaces a test's policies select.
const caseLabel = "e2e.slimgate.dev/case"

// eventually is webhooktest.Eventually.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	webhooktest.Eventually(t, within, f)
}

// namespace creates a namespace with these labels, deleted after the test.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	return e2e.Namespace(t, labels)
}

// spec is a policy spec allowed to reach the loopback test registries.
func spec(mode v1alpha1.Mode, selector map[string]string) v1alpha1.SlimImagePolicySpec {
	s := v1alpha1.SlimImagePolicySpec{
		Mode: mode,
		Registries: v1alpha1.RegistryRules{
			AllowPrivateNetworks: true,
			Insecure:             []string{e2e.reg.Open, e2e.reg.Private, e2e.unreachable},
		},
	}
	if selector != nil {
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
	}
	return s
}

// policy creates a policy, waits until the webhook reports it Ready, and
// deletes it after the test.
func policy(t *testing.T, s v1alpha1.SlimImagePolicySpec) *v1alpha1.SlimImagePolicy {
	t.Helper()
	ctx := context.Background()
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6)}, Spec: s}
	if err := e2e.client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e2e.client.Delete(ctx, p)
		// Wait until the webhook's cache no longer has it: the status
		// controller stops seeing it at the same time.
		eventually(t, 10*time.Second, func() error {
			err := e2e.client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.SlimImagePolicy{})
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case err != nil:
				return fmt.Errorf("policy %s: %w", p.Name, err)
			}
			return fmt.Errorf("policy %s still there", p.Name)
		})
	})
	if err := devcluster.WaitPolicyReady(ctx, e2e.client, p.Name, controller.ConditionReady, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustRefuse creates p, which the API server must refuse with an error
// naming field.
func mustRefuse(t *testing.T, p *v1alpha1.SlimImagePolicy, field string) {
	t.Helper()
	err := e2e.client.Create(context.Background(), p)
	if err == nil {
		_ = e2e.client.Delete(context.Background(), p)
		t.Fatal("invalid policy accepted")
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("error does not name %s: %v", field, err)
	}
}

// pod returns a Pod running one container named "app".
func pod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// create creates obj and returns the warnings received and the error.
func create(t *testing.T, obj client.Object, opts ...client.CreateOption) ([]string, error) {
	t.Helper()
	e2e.warnings.Take()
	err := e2e.client.Create(context.Background(), obj, opts...)
	return e2e.warnings.Take(), err
}

// mustDeny checks err is an admission denial containing every want.
func mustDeny(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("admitted, want denied")
	}
	if !apierrors.IsForbidden(err) {
		t.Fatalf("error %v is not a denial", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("denial does not mention %q:\n%v", w, err)
		}
	}
}

// mentionsGoSDK checks a message quotes one of the Go SDK history lines.
func mentionsGoSDK(t *testing.T, msg string) {
	t.Helper()
	for _, evidence := range []string{"GOLANG_VERSION=1.24.4", "go build -o /app", "/usr/local/go/bin"} {
		if strings.Contains(msg, evidence) {
			return
		}
	}
	t.Errorf("message names no Go SDK evidence:\n%s", msg)
}

// events lists the events.k8s.io/v1 Events regarding name in ns.
func events(ns, name string) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	err := e2e.client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingFields{"regarding.name": name})
	return list.Items, err
}

// waitEvent waits for an Event with this reason regarding name.
func waitEvent(t *testing.T, ns, name, reason string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	eventually(t, 15*time.Second, func() error {
		evs, err := events(ns, name)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Reason == reason {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s event regarding %s/%s among %d", reason, ns, name, len(evs))
	})
	return found
}

var errAdmitted = errors.New("admitted")
