package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// TestImagesAreJudgedFromTheNodesMirror: the nodes pull Docker Hub and
// quay.io images from a mirror (an air-gapped cluster), and the webhook,
// given the same mirrors (--registry-mirrors), judges them from it with
// the upstreams never contacted. A Pod naming "nginx" (the Go SDK image
// on the mirror) and "quay.io/org/app" (the multi-stage one) is denied for
// nginx alone; a Pod naming only the slim one is admitted.
func TestImagesAreJudgedFromTheNodesMirror(t *testing.T) {
	// The mirror is the suite's open registry (loopback, plain HTTP).
	mirror := e2e.reg.Open
	for ref, spec := range map[string]devcluster.ImageSpec{
		mirror + "/library/nginx:latest": devcluster.GoSDKApp(),
		mirror + "/org/app:1":            devcluster.StaticApp(),
	} {
		img, err := spec.Build(512, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := devcluster.Push(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	// Docker Hub has no fallback; quay.io has one, never needed while the
	// mirror serves.
	file := filepath.Join(t.TempDir(), "mirrors.yaml")
	config := fmt.Sprintf("docker.io: {endpoints: [http://%s], fallback: false}\nquay.io: {endpoints: [http://%[1]s]}\n", mirror)
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	withMirrors := e2e.WebhookOptions
	withMirrors.RegistryMirrors, withMirrors.Registerer = file, metrics
	replaceWebhook(t, withMirrors)

	ns := namespace(t, caseLabels(t))
	// The mirror is read under the same rules as any registry: spec's
	// allowPrivateNetworks and insecure list let the loopback one in.
	p := policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))

	mixed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mixed"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Image: "nginx"},
		{Name: "app", Image: "quay.io/org/app:1"},
	}}}
	_, err := create(t, mixed)
	mustDeny(t, err, "["+p.Name+"]", `container "web"`, "nginx", "toolchain.go")
	mentionsGoSDK(t, err.Error())
	if strings.Contains(err.Error(), `container "app"`) {
		t.Errorf("the slim image is named in the denial:\n%v", err)
	}
	if _, err := create(t, pod(ns, "slim", "quay.io/org/app:1")); err != nil {
		t.Errorf("the slim image from the mirror refused: %v", err)
	}
	ev := waitEvent(t, ns, "mixed", "ImageRejected")
	if !strings.Contains(ev.Note, "nginx") || !strings.Contains(ev.Note, "toolchain.go") {
		t.Errorf("the Event does not name nginx's toolchain:\n%s", ev.Note)
	}

	requests := map[string]float64{}
	families, err := metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "slimgate_registry_requests_total" {
			for _, m := range f.GetMetric() {
				requests[label(m, "registry")] += m.GetCounter().GetValue()
			}
		}
	}
	if requests[mirror] == 0 || requests["index.docker.io"]+requests["quay.io"] != 0 {
		t.Errorf("requests by registry %v: want the mirror's only, under its own label", requests)
	}
}

// replaceWebhook stops the suite's webhook and runs one with o in its
// place for the rest of the test; the suite's webhook is back afterwards.
func replaceWebhook(t *testing.T, o app.Options) {
	t.Helper()
	ctx := context.Background()
	if err := e2e.Webhook.Stop(webhooktest.StopWithin); err != nil {
		t.Fatalf("stopping the suite's webhook: %v", err)
	}
	replacement, err := webhooktest.Run(ctx, o)
	t.Cleanup(func() {
		if replacement != nil {
			if err := replacement.Stop(webhooktest.StopWithin); err != nil {
				t.Errorf("stopping the webhook with mirrors: %v", err)
			}
		}
		if e2e.Webhook, err = webhooktest.Run(ctx, e2e.WebhookOptions); err != nil {
			t.Fatalf("restarting the suite's webhook: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("starting the webhook with mirrors: %v", err)
	}
}
