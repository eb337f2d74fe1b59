package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
)

// pinLabel marks the namespaces the suite's digest pinning applies to.
// The suite installs config/webhook/pinning's configuration with this
// label added to its namespaceSelector, and runs its webhook with
// PinDigests: every other test sees Pods as they were written.
const pinLabel = "e2e.slimgate.dev/pin"

// pinningWebhook is config/webhook/pinning's MutatingWebhookConfiguration,
// which envtest does not read (it reads config/webhook's own files),
// confined to namespaces labelled pinLabel.
func pinningWebhook(root string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	data, err := os.ReadFile(filepath.Join(root, "config", "webhook", "pinning", "mutating.yaml"))
	if err != nil {
		return nil, fmt.Errorf("reading the pinning webhook configuration: %w", err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &mwc); err != nil {
		return nil, fmt.Errorf("parsing the pinning webhook configuration: %w", err)
	}
	for i := range mwc.Webhooks {
		if mwc.Webhooks[i].NamespaceSelector == nil {
			mwc.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{}
		}
		mwc.Webhooks[i].NamespaceSelector.MatchLabels = map[string]string{pinLabel: "true"}
	}
	return &mwc, nil
}

// movingTag pushes a slim image under a tag of its own in the open
// registry and returns the tag and a function that moves it to an image
// with the Go SDK; both images' digests too.
func movingTag(t *testing.T) (ref, slimDigest, fatDigest string, move func()) {
	t.Helper()
	ref = e2e.reg.Open + "/moving-" + rand.String(6) + "/app:T"
	build := func(s devcluster.ImageSpec) (v1.Image, string) {
		img, err := s.Build(512, 0)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return img, d.String()
	}
	slim, slimDigest := build(devcluster.StaticApp())
	fat, fatDigest := build(devcluster.GoSDKApp())
	if err := devcluster.Push(ref, slim); err != nil {
		t.Fatal(err)
	}
	return ref, slimDigest, fatDigest, func() {
		if err := devcluster.Push(ref, fat); err != nil {
			t.Fatal(err)
		}
	}
}

// stored reads a Pod back from the API server and returns its image.
func stored(t *testing.T, ns, name string) string {
	t.Helper()
	var p corev1.Pod
	if err := e2e.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return p.Spec.Containers[0].Image
}

// Time of check and time of use, without pinning: a Pod naming tag T is
// admitted while T names a slim image; T is moved to an image with the Go
// SDK; the next Pod naming T is denied at once, not after the minutes the
// tag cache would have trusted the slim image's digest. The stored Pods
// name the tag as written.
func TestMovedTagIsJudgedAnewOnPodCreate(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	p := policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	ref, _, _, move := movingTag(t)

	if _, err := create(t, pod(ns, "before", ref)); err != nil {
		t.Fatalf("the slim image was refused: %v", err)
	}
	move()
	_, err := create(t, pod(ns, "after", ref))
	mustDeny(t, err, "["+p.Name+"]", ref, "toolchain.go")
	if got := stored(t, ns, "before"); got != ref {
		t.Errorf("stored Pod names %s, want %s as written (no pinning here)", got, ref)
	}
}

// With digest pinning: the Pod admitted while T names the slim image is
// stored naming T@<slim digest>, the digest judged, and keeps naming it
// after T moves; a Pod created after the move is pinned to the Go SDK
// image's digest, and that is what the validating webhook judges and
// denies.
func TestPinnedPodNamesTheJudgedDigest(t *testing.T) {
	labels := caseLabels(t)
	ns := namespace(t, map[string]string{caseLabel: labels[caseLabel], pinLabel: "true"})
	p := policy(t, spec(v1alpha1.ModeEnforce, labels))
	ref, slimDigest, fatDigest, move := movingTag(t)

	if _, err := create(t, pod(ns, "before", ref)); err != nil {
		t.Fatalf("the slim image was refused: %v", err)
	}
	if got, want := stored(t, ns, "before"), ref+"@"+slimDigest; got != want {
		t.Fatalf("stored Pod names %s, want %s", got, want)
	}
	move()
	_, err := create(t, pod(ns, "after", ref))
	mustDeny(t, err, "["+p.Name+"]", ref+"@"+fatDigest, "toolchain.go")
	mentionsGoSDK(t, err.Error())
	if got, want := stored(t, ns, "before"), ref+"@"+slimDigest; got != want {
		t.Errorf("after the move the stored Pod names %s, want %s", got, want)
	}
}
