package admission

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
)

// A decision names every image it found something in, each with its own
// reason and a note about that image only: one Event per image. An image
// in several places is one image, with the strictest reason of its places.
func TestDecisionsNameEveryImage(t *testing.T) {
	at := func(ref string, i int) Image {
		return Image{Reference: ref, Container: fmt.Sprint("c", i), Source: sourceContainer, Path: fmt.Sprintf("spec.containers[%d].image", i)}
	}
	j := func(img Image, a policy.Action) judgment {
		return judged("pol", v1alpha1.ModeEnforce, img, finding(a, "toolchain.go"))
	}
	clean := judged("pol", v1alpha1.ModeEnforce, at("slim:1", 4))
	failed := judged("pol", v1alpha1.ModeEnforce, at("gone:1", 5))
	failed.failure = &failure{reason: "unreachable", detail: "no answer"}
	out := decide([]judgment{
		j(at("sdk:1", 0), policy.ActionAudit), j(at("jdk:1", 1), policy.ActionDeny),
		j(at("sdk:1", 2), policy.ActionDeny), j(at("sdk:1", 3), policy.ActionAudit), clean, failed,
	})
	ds := out.decisions(&Workload{Object: &corev1.Pod{}}, standing{})
	if len(ds) != 1 {
		t.Fatalf("decisions = %d, want 1", len(ds))
	}
	var got []string
	for _, im := range ds[0].Images {
		got = append(got, im.Image+" "+im.Reason)
		for _, other := range []string{"sdk:1", "jdk:1", "gone:1", "slim:1"} {
			if mentions := strings.Contains(im.Note, "image "+other); mentions != (other == im.Image) {
				t.Errorf("note about %s mentions %s: %v\n%s", im.Image, other, mentions, im.Note)
			}
		}
	}
	want := []string{"sdk:1 " + events.ReasonRejected, "jdk:1 " + events.ReasonRejected, "gone:1 " + events.ReasonInspectionFailed}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
	for _, place := range []string{"c0", "c2", "c3"} {
		if !strings.Contains(ds[0].Images[0].Note, `"`+place+`"`) {
			t.Errorf("note about sdk:1 does not name container %s:\n%s", place, ds[0].Images[0].Note)
		}
	}
	if ds[0].Reason != events.ReasonRejected || ds[0].Verdict != string(policy.VerdictDeny) {
		t.Errorf("decision reason %s, verdict %s", ds[0].Reason, ds[0].Verdict)
	}

	// Nothing found, nothing failed: no reason, no image.
	ds = decide([]judgment{clean}).decisions(&Workload{Object: &corev1.Pod{}}, standing{})
	if len(ds) != 1 || ds[0].Reason != "" || len(ds[0].Images) != 0 {
		t.Errorf("clean decision %+v", ds)
	}
}

// reviewed logs the Pods whose creation the handler reviewed.
type reviewed []types.UID

func (r *reviewed) Reviewed(pod client.Object) { *r = append(*r, pod.GetUID()) }

// Every Pod CREATE admitted is logged, whether a policy applies or not;
// dry runs, updates, subresources and other kinds are not.
func TestHandlerLogsReviewedPodCreates(t *testing.T) {
	var calls atomic.Int64
	log := &reviewed{}
	pod := func(uid string) []byte {
		return raw(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team", UID: types.UID(uid)}, Spec: podSpec()}, "v1", "Pod")
	}
	dry := request(admissionv1.Create, "", "Pod", "", pod("dry"), nil)
	dry.DryRun = new(true)
	for _, c := range []struct {
		name     string
		policies []*v1alpha1.SlimImagePolicy
		req      admission.Request
	}{
		{"create", []*v1alpha1.SlimImagePolicy{clusterWide()}, request(admissionv1.Create, "", "Pod", "", pod("judged"), nil)},
		{"create with no policy", nil, request(admissionv1.Create, "", "Pod", "", pod("unjudged"), nil)},
		{"dry run", []*v1alpha1.SlimImagePolicy{clusterWide()}, dry},
		{"update", []*v1alpha1.SlimImagePolicy{clusterWide()}, request(admissionv1.Update, "", "Pod", "", pod("updated"), pod("updated"))},
		{"ephemeral containers", []*v1alpha1.SlimImagePolicy{clusterWide()}, request(admissionv1.Update, "", "Pod", "ephemeralcontainers", pod("debugged"), pod("debugged"))},
		{"deployment", []*v1alpha1.SlimImagePolicy{clusterWide()}, request(admissionv1.Create, "apps", "Deployment", "",
			raw(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "team", UID: "deployment"}, Spec: appsv1.DeploymentSpec{Template: template()}}, "apps/v1", "Deployment"), nil)},
	} {
		h := hostileHandler(t, policiesReader(t, c.policies...), plainFacts(&calls), Options{Reviews: log})
		if resp := h.Handle(context.Background(), c.req); !resp.Allowed {
			t.Fatalf("%s: refused: %v", c.name, resp.Result)
		}
	}
	if diff := cmp.Diff(reviewed{"judged", "unjudged"}, *log); diff != "" {
		t.Errorf("logged reviews (-want +got):\n%s", diff)
	}
}

// A refused Pod CREATE is not logged: that Pod never exists, and the log
// is bounded, so requests that are refused (cheap to repeat, a
// controller's retries of a refused workload) must not push the reviews
// of Pods that do exist out of it and cut the records short, which hides
// the Pods created meanwhile without a review.
func TestHandlerDoesNotLogRefusedPodCreates(t *testing.T) {
	log := &reviewed{}
	h := hostileHandler(t, policiesReader(t, clusterWide()), fatInspector(), Options{Reviews: log})
	for i := range 3 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team", UID: types.UID(fmt.Sprint("refused-", i))}, Spec: podSpec()}
		if resp := h.Handle(context.Background(), request(admissionv1.Create, "", "Pod", "", raw(t, pod, "v1", "Pod"), nil)); resp.Allowed {
			t.Fatalf("fat Pod admitted under Enforce")
		}
	}
	if len(*log) != 0 {
		t.Errorf("logged the reviews of refused Pods: %v", *log)
	}
}
