package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
)

// pushSDK pushes a new build of the Go SDK image (new random layers, so a
// new digest) to repo:1 in the open registry and returns the reference
// and the digest.
func pushSDK(t *testing.T, repo string) (ref, digest string) {
	t.Helper()
	img, err := devcluster.GoSDKApp().Build(512, 0)
	if err != nil {
		t.Fatal(err)
	}
	ref = e2e.reg.Open + "/" + repo + ":1"
	tag, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, d.String()
}

// sie returns an exception of policy p for these images or digests,
// expiring at expires.
func sie(ns, policyName string, expires time.Time, images, digests []string) *v1alpha1.SlimImageException {
	return &v1alpha1.SlimImageException{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exc-" + rand.String(5)},
		Spec: v1alpha1.SlimImageExceptionSpec{Policies: []string{policyName}, Rules: []string{"*"},
			Images: images, Digests: digests, Reason: "CI runner image, slimmed next sprint", Expires: metav1.NewTime(expires)},
	}
}

// createException creates e (cleaned up after the test) and returns the
// warnings of its creation.
func createException(t *testing.T, e *v1alpha1.SlimImageException) []string {
	t.Helper()
	warnings, err := create(t, e)
	if err != nil {
		t.Fatalf("creating exception %s: %v", e.Name, err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), e) })
	return warnings
}

// admittedEventually creates pod until the webhook admits it (its cache
// has to see a new exception first) and returns the warnings.
func admittedEventually(t *testing.T, ns, podName, image string) []string {
	t.Helper()
	var warnings []string
	eventually(t, 10*time.Second, func() error {
		var err error
		warnings, err = create(t, pod(ns, podName, image))
		return err
	})
	return warnings
}

// An exception admits its image, with an ImageExcepted Event naming it,
// its reason and expiry, and a warning that it expires soon; once its
// expires passes the next Pod is refused at once, and the controller marks
// it Expired.
func TestExceptionAdmitsThenExpires(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	p := policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	_, err := create(t, pod(ns, "before", e2e.reg.GoSDKApp()))
	mustDeny(t, err, "toolchain.go")

	expires := time.Now().Add(12 * time.Second).Truncate(time.Second)
	e := sie(ns, p.Name, expires, []string{e2e.reg.Open + "/golang-app:*"}, nil)
	createException(t, e)

	warnings := admittedEventually(t, ns, "excepted", e2e.reg.GoSDKApp())
	if !strings.Contains(strings.Join(warnings, "\n"), "exception "+e.Name+" expires in") {
		t.Errorf("warnings %q do not say the exception expires soon", warnings)
	}
	ev := waitEvent(t, ns, "excepted", "ImageExcepted")
	for _, want := range []string{"SlimImageException " + e.Name, e.Spec.Reason, expires.UTC().Format(time.RFC3339), "toolchain.go"} {
		if !strings.Contains(ev.Note, want) {
			t.Errorf("ImageExcepted note does not mention %q:\n%s", want, ev.Note)
		}
	}
	if ev.Related == nil || ev.Related.Name != p.Name {
		t.Errorf("event related %+v, want policy %s", ev.Related, p.Name)
	}

	time.Sleep(time.Until(expires) + 100*time.Millisecond)
	_, err = create(t, pod(ns, "after", e2e.reg.GoSDKApp()))
	mustDeny(t, err, "toolchain.go")

	eventually(t, 10*time.Second, func() error {
		var got v1alpha1.SlimImageException
		if err := e2e.client.Get(context.Background(), client.ObjectKeyFromObject(e), &got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ExceptionExpired) ||
			meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ExceptionActive) {
			return fmt.Errorf("conditions %+v, want Expired and not Active", got.Status.Conditions)
		}
		return nil
	})
}

// An exception applies only in its own namespace and only to the digests
// it names: a new push to the same tag is judged again.
func TestExceptionScope(t *testing.T) {
	labels := caseLabels(t)
	ns, elsewhere := namespace(t, labels), namespace(t, labels)
	p := policy(t, spec(v1alpha1.ModeEnforce, labels))
	repo := "exc-" + rand.String(5)
	ref, digest := pushSDK(t, repo)
	expires := time.Now().Add(time.Hour)

	// In another namespace, it does not apply here.
	createException(t, sie(elsewhere, p.Name, expires, []string{ref}, nil))
	admittedEventually(t, elsewhere, "control", ref)
	_, err := create(t, pod(ns, "other-namespace", ref))
	mustDeny(t, err, "toolchain.go")

	// For the digest judged, it applies; for another push, it does not.
	createException(t, sie(ns, p.Name, expires, nil, []string{digest}))
	admittedEventually(t, ns, "same-digest", ref)
	_, newDigest := pushSDK(t, repo)
	if newDigest == digest {
		t.Fatal("the second push has the same digest")
	}
	_, err = create(t, pod(ns, "new-push", ref))
	mustDeny(t, err, "toolchain.go")
}

// The webhook refuses an exception that lasts longer than the policy it
// names allows, with a message that says so; the CRD refuses one that
// names neither images nor digests.
func TestExceptionMaxDuration(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	s := spec(v1alpha1.ModeEnforce, caseLabels(t))
	s.Exceptions.MaxDuration = &metav1.Duration{Duration: time.Hour}
	p := policy(t, s)

	_, err := create(t, sie(ns, p.Name, time.Now().Add(2*time.Hour), []string{"*"}, nil))
	if !apierrors.IsInvalid(err) {
		t.Fatalf("an exception of 2h under maxDuration 1h: %v, want refused as invalid", err)
	}
	for _, want := range []string{"spec.expires", "policy " + p.Name, "maxDuration 1h0m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not mention %q: %v", want, err)
		}
	}
	createException(t, sie(ns, p.Name, time.Now().Add(50*time.Minute), []string{"*"}, nil))

	_, err = create(t, sie(ns, p.Name, time.Now().Add(time.Minute), nil, nil))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "at least one of images and digests") {
		t.Errorf("an exception without images or digests: %v, want refused by the CRD", err)
	}
}
