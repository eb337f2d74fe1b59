package preview

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/policy"
)

func TestFingerprint(t *testing.T) {
	base := v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeAudit}
	same := []v1alpha1.SlimImagePolicySpec{
		{},                           // Enforce by default
		{Mode: v1alpha1.ModeEnforce}, // a mode changes nothing
		{Mode: v1alpha1.ModeWarn, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}},
	}
	for _, s := range same {
		if Fingerprint(&s) != Fingerprint(&base) {
			t.Errorf("Fingerprint(%+v) differs from that of %+v: only mode and selector changed", s, base)
		}
	}
	budget := resource.MustParse("1Mi")
	other := v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeAudit, SizeBudget: v1alpha1.SizeBudget{MaxCompressed: &budget}}
	if Fingerprint(&other) == Fingerprint(&base) {
		t.Error("a size budget does not change the fingerprint")
	}
	if Fingerprint(&base) == "" {
		t.Error("empty fingerprint")
	}
}

// workload is a result of a scan: each image "rule" under policy with
// the action.
func workload(ns, name, pol string, action policy.Action, rules ...string) fleet.WorkloadResult {
	w := fleet.WorkloadResult{Ref: fleet.Ref{Kind: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespace: ns, Name: name}}
	for i, r := range rules {
		w.Images = append(w.Images, fleet.ImageResult{Target: fleet.Target{Image: admission.Image{Reference: fmt.Sprintf("%s-%d", name, i)}},
			Policy: pol, Action: action, Rules: []string{r}, Digest: fmt.Sprintf("sha256:%s%d", name, i), BloatBytes: 100})
	}
	return w
}

func TestBuild(t *testing.T) {
	at := metav1.NewTime(time.Unix(1700000000, 0))
	results := []fleet.WorkloadResult{
		workload("zoo", "keeper", "p", policy.ActionDeny, "toolchain.go"), // out of order
		workload("blog", "front", "p", policy.ActionDeny, "toolchain.go", "size.compressed"),
		workload("blog", "quiet", "p", ""),
		workload("blog", "warned", "p", policy.ActionWarn, "toolchain.go"),
		workload("blog", "other", "q", policy.ActionDeny, "toolchain.go"),
	}
	for i := range 12 {
		results = append(results, workload("shop", fmt.Sprintf("app%02d", i), "p", policy.ActionDeny, "toolchain.cc"))
	}
	got := Build(results, "p", "r1", at)
	want := &v1alpha1.PreviewStatus{ScanTime: at, Rules: "r1", Namespaces: []v1alpha1.NamespacePreview{
		{Namespace: "blog", Denied: 1, Workloads: []v1alpha1.WorkloadPreview{{Kind: "Deployment", Name: "front", Rule: "toolchain.go", BloatBytes: 200}}},
		{Namespace: "shop", Denied: 12},
		{Namespace: "zoo", Denied: 1, Workloads: []v1alpha1.WorkloadPreview{{Kind: "Deployment", Name: "keeper", Rule: "toolchain.go", BloatBytes: 100}}},
	}}
	for i := range MaxWorkloadsPerNamespace {
		want.Namespaces[1].Workloads = append(want.Namespaces[1].Workloads,
			v1alpha1.WorkloadPreview{Kind: "Deployment", Name: fmt.Sprintf("app%02d", i), Rule: "toolchain.cc", BloatBytes: 100})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("preview (-want +got):\n%s", diff)
	}
	if got := Build(results, "none", "r1", at); len(got.Namespaces) != 0 {
		t.Errorf("a policy with no results has a preview of %d namespaces", len(got.Namespaces))
	}
}

func TestBuildBounds(t *testing.T) {
	var results []fleet.WorkloadResult
	for ns := range MaxNamespaces + 5 {
		results = append(results, workload(fmt.Sprintf("ns%04d", ns), "a", "p", policy.ActionDeny, "toolchain.go"))
	}
	got := Build(results, "p", "r", metav1.Now())
	named := 0
	for _, ns := range got.Namespaces {
		named += len(ns.Workloads)
	}
	if len(got.Namespaces) != MaxNamespaces || named != MaxWorkloads {
		t.Errorf("preview holds %d namespaces naming %d workloads, want %d and %d", len(got.Namespaces), named, MaxNamespaces, MaxWorkloads)
	}
}
