package preview

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
)

func newReader(t *testing.T, objs ...client.Object) client.Reader {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

// request is an admission request of kind for obj (and old, on UPDATE).
func request(t *testing.T, kind, op string, obj, old any) admission.Request {
	t.Helper()
	raw := func(o any) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Kind: metav1.GroupVersionKind{Kind: kind}, Operation: admissionv1.Operation(op), Object: raw(obj), OldObject: raw(old)}}
}

func ns(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// sip is a policy with a preview for its spec naming, per namespace, n
// workloads app0..app(n-1) in Deployments.
func sip(name string, mode v1alpha1.Mode, selector map[string]string, denied map[string]int) *v1alpha1.SlimImagePolicy {
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.SlimImagePolicySpec{Mode: mode}}
	if selector != nil {
		p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
	}
	if denied == nil {
		return p
	}
	pv := &v1alpha1.PreviewStatus{Rules: Fingerprint(&p.Spec)}
	for _, n := range []string{"blog", "other", "shop"} {
		if denied[n] == 0 {
			continue
		}
		e := v1alpha1.NamespacePreview{Namespace: n, Denied: int32(denied[n])}
		for i := range min(denied[n], MaxWorkloadsPerNamespace) {
			e.Workloads = append(e.Workloads, v1alpha1.WorkloadPreview{Kind: "Deployment", Name: fmt.Sprintf("app%d", i), Rule: "toolchain.go", BloatBytes: 612 << 20})
		}
		pv.Namespaces = append(pv.Namespaces, e)
	}
	p.Status.Preview = pv
	return p
}

var optIn = map[string]string{"slimgate.dev/enabled": "true"}

func TestNamespaceHandler(t *testing.T) {
	stale := sip("stale", v1alpha1.ModeEnforce, map[string]string{"stale": "yes"}, map[string]int{"shop": 1})
	stale.Status.Preview.Rules = "older"
	policies := []client.Object{
		sip("opt-in", v1alpha1.ModeEnforce, optIn, map[string]int{"shop": 2, "blog": 1}),
		sip("warn-opt-in", v1alpha1.ModeWarn, optIn, map[string]int{"shop": 2}),
		sip("everywhere", "", nil, map[string]int{"shop": 5}),
		sip("unscanned", v1alpha1.ModeEnforce, map[string]string{"unscanned": "yes"}, nil),
		stale,
	}
	h := &NamespaceHandler{Reader: newReader(t, policies...)}
	review(t, h, "Namespace", []reviewCase{
		{"label selects opt-in", "UPDATE", ns("shop", optIn), ns("shop", nil), []string{
			"slimgate: policy opt-in (Enforce) would deny 2 running workloads in namespace shop:",
			"  Deployment/app0 (toolchain.go, 642 MB)",
			"  Deployment/app1 (toolchain.go, 642 MB)",
		}},
		{"label kept", "UPDATE", ns("shop", map[string]string{"slimgate.dev/enabled": "true", "x": "y"}), ns("shop", optIn), nil},
		{"label removed", "UPDATE", ns("shop", nil), ns("shop", optIn), nil},
		{"nothing denied there", "UPDATE", ns("quiet", optIn), ns("quiet", nil), nil},
		{"created with the label", "CREATE", ns("blog", optIn), nil, []string{
			"slimgate: policy opt-in (Enforce) would deny 1 running workload in namespace blog:",
			"  Deployment/app0 (toolchain.go, 642 MB)",
			// everywhere selects a new namespace too, but denies nothing in blog.
		}},
		{"no preview yet", "UPDATE", ns("shop", map[string]string{"unscanned": "yes"}), ns("shop", nil), []string{
			"slimgate: policy unscanned (Enforce) now applies to namespace shop; no scan has previewed what it would deny yet",
		}},
		{"rules changed since the scan", "UPDATE", ns("shop", map[string]string{"stale": "yes"}), ns("shop", nil), []string{
			"slimgate: policy stale (Enforce) now applies to namespace shop; its rules changed since the last scan, no preview yet",
		}},
	})
}

// reviewCase is a review and the warnings it must get.
type reviewCase struct {
	name     string
	op       string
	cur, old any
	want     []string
}

// review runs each case through h, which must allow it.
func review(t *testing.T, h admission.Handler, kind string, cases []reviewCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := h.Handle(context.Background(), request(t, kind, c.op, c.cur, c.old))
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			if diff := cmp.Diff(c.want, resp.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyHandler(t *testing.T) {
	teamA := map[string]string{"team": "a"}
	audit := sip("audit-all", v1alpha1.ModeAudit, nil, map[string]int{"shop": 2, "blog": 1, "other": 1})
	many := sip("many", v1alpha1.ModeAudit, nil, map[string]int{"shop": 14, "blog": 3})
	many.Spec.Exclude.Images = []string{"registry.k8s.io/*"} // other rules
	many.Status.Preview.Rules = Fingerprint(&many.Spec)
	reader := newReader(t, audit, many, ns("shop", teamA), ns("blog", teamA), ns("other", map[string]string{"team": "b"}))
	h := &PolicyHandler{Reader: reader}
	enforced := func(p *v1alpha1.SlimImagePolicy, selector map[string]string) *v1alpha1.SlimImagePolicy {
		q := p.DeepCopy()
		q.Spec.Mode = v1alpha1.ModeEnforce
		q.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
		return q
	}
	newPolicy := func(name string, from *v1alpha1.SlimImagePolicy, selector map[string]string) *v1alpha1.SlimImagePolicy {
		q := enforced(from, selector)
		q.ObjectMeta = metav1.ObjectMeta{Name: name}
		q.Status = v1alpha1.SlimImagePolicyStatus{}
		return q
	}
	budget := resource.MustParse("1Mi")
	otherRules := newPolicy("fresh", audit, nil)
	otherRules.Spec.SizeBudget.MaxCompressed = &budget
	createdInAudit := newPolicy("quiet", audit, nil)
	createdInAudit.Spec.Mode = v1alpha1.ModeAudit
	review(t, h, "SlimImagePolicy", []reviewCase{
		{"audit to enforce for team a", "UPDATE", enforced(audit, teamA), audit, []string{
			"slimgate: Enforce would deny 3 running workloads in 2 namespaces:",
			"  blog/app0 (toolchain.go, 642 MB)",
			"  shop/app0 (toolchain.go, 642 MB)",
			"  shop/app1 (toolchain.go, 642 MB)",
		}},
		{"created with the same rules as another", "CREATE", newPolicy("team-b", audit, map[string]string{"team": "b"}), nil, []string{
			"slimgate: Enforce would deny 1 running workload in 1 namespace:",
			"  other/app0 (toolchain.go, 642 MB)",
		}},
		{"bounded", "CREATE", newPolicy("all", many, nil), nil, []string{
			"slimgate: Enforce would deny 17 running workloads in 2 namespaces:",
			"  blog/app0 (toolchain.go, 642 MB)", "  blog/app1 (toolchain.go, 642 MB)", "  blog/app2 (toolchain.go, 642 MB)",
			"  shop/app0 (toolchain.go, 642 MB)", "  shop/app1 (toolchain.go, 642 MB)", "  shop/app2 (toolchain.go, 642 MB)",
			"  shop/app3 (toolchain.go, 642 MB)", "  shop/app4 (toolchain.go, 642 MB)", "  shop/app5 (toolchain.go, 642 MB)",
			"  shop/app6 (toolchain.go, 642 MB)",
			"  and 7 more",
		}},
		{"rules never scanned", "CREATE", otherRules, nil, []string{
			"slimgate: no scan has previewed these rules yet: status.preview will say what Enforce would deny after the next scan",
		}},
		{"created in audit", "CREATE", createdInAudit, nil, nil},
		{"enforced already, label change only", "UPDATE", withLabel(enforced(audit, teamA)), enforced(audit, teamA), nil},
		{"selects nothing denied", "UPDATE", enforced(audit, map[string]string{"team": "c"}), audit, nil},
	})
}

func withLabel(p *v1alpha1.SlimImagePolicy) *v1alpha1.SlimImagePolicy {
	p.Labels = map[string]string{"owner": "platform"}
	return p
}
