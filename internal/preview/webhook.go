package preview

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// MaxListed is how many workloads a preview's warnings name; the rest are
// counted ("and 7 more").
const MaxListed = 10

// NamespaceHandler warns, on a namespace's creation or label change, of
// the running workloads there that the Enforce policies its new labels
// select, and its old labels did not, would deny. It never denies.
type NamespaceHandler struct {
	// Reader lists the policies: the manager's cache.
	Reader client.Reader
}

// Handle implements admission.Handler.
func (h *NamespaceHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	var ns, old corev1.Namespace
	if resp := decodeReview(req, "Namespace", &ns, &old); resp != nil {
		return *resp
	}
	var oldLabels labels.Set // none on CREATE: a selector matches nothing
	if req.Operation == "UPDATE" {
		oldLabels = withName(old.Labels, old.Name)
	}
	newLabels := withName(ns.Labels, ns.Name)
	policies, err := listPolicies(ctx, h.Reader)
	if err != nil {
		logf.FromContext(ctx).Error(err, "namespace preview")
		return admission.Allowed("not previewed: " + err.Error())
	}
	var warnings []string
	for _, p := range policies {
		sel := policy.NamespaceSelector(p.Spec.NamespaceSelector)
		if !enforces(p) || !sel.Matches(newLabels) || (oldLabels != nil && sel.Matches(oldLabels)) {
			continue
		}
		warnings = append(warnings, namespaceWarnings(p, ns.Name)...)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

// namespaceWarnings words what a policy's Enforce would deny in a
// namespace, from its preview.
func namespaceWarnings(p *v1alpha1.SlimImagePolicy, namespace string) []string {
	pv := p.Status.Preview
	switch {
	case pv == nil:
		return []string{fmt.Sprintf("slimgate: policy %s (Enforce) now applies to namespace %s; no scan has previewed what it would deny yet", p.Name, namespace)}
	case pv.Rules != Fingerprint(&p.Spec):
		return []string{fmt.Sprintf("slimgate: policy %s (Enforce) now applies to namespace %s; its rules changed since the last scan, no preview yet", p.Name, namespace)}
	}
	i, found := slices.BinarySearchFunc(pv.Namespaces, namespace, func(e v1alpha1.NamespacePreview, ns string) int { return cmp.Compare(e.Namespace, ns) })
	if !found {
		return nil
	}
	e := &pv.Namespaces[i]
	head := fmt.Sprintf("slimgate: policy %s (Enforce) would deny %d running %s in namespace %s:", p.Name, e.Denied, plural(int(e.Denied), "workload"), namespace)
	return append([]string{head}, listed([]*v1alpha1.NamespacePreview{e}, int(e.Denied), false)...)
}

// PolicyHandler warns, on a SlimImagePolicy's creation in Enforce mode or
// a change to Enforce, to its namespaceSelector or to its rules, of the
// running workloads Enforce would deny. It never denies.
type PolicyHandler struct {
	// Reader lists the policies and namespaces: the manager's cache.
	Reader client.Reader
}

// Handle implements admission.Handler.
func (h *PolicyHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	var p, old v1alpha1.SlimImagePolicy
	if resp := decodeReview(req, "SlimImagePolicy", &p, &old); resp != nil {
		return *resp
	}
	if !enforces(&p) || (req.Operation == "UPDATE" && !changed(&old, &p)) {
		return admission.Allowed("")
	}
	warnings, err := h.warnings(ctx, &p, &old)
	if err != nil {
		logf.FromContext(ctx).Error(err, "policy preview")
		return admission.Allowed("not previewed: " + err.Error())
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

// warnings words what p's Enforce would deny, from the preview of a
// policy with the same rules: its own (old, on UPDATE), else any other's.
func (h *PolicyHandler) warnings(ctx context.Context, p, old *v1alpha1.SlimImagePolicy) ([]string, error) {
	rules := Fingerprint(&p.Spec)
	pv := old.Status.Preview
	if pv == nil || pv.Rules != rules {
		pv = nil
		policies, err := listPolicies(ctx, h.Reader)
		if err != nil {
			return nil, err
		}
		for _, other := range policies {
			if q := other.Status.Preview; q != nil && q.Rules == rules && (pv == nil || other.Name == p.Name) {
				pv = q
			}
		}
	}
	if pv == nil {
		return []string{"slimgate: no scan has previewed these rules yet: status.preview will say what Enforce would deny after the next scan"}, nil
	}
	var namespaces corev1.NamespaceList
	if err := h.Reader.List(ctx, &namespaces); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	sel := policy.NamespaceSelector(p.Spec.NamespaceSelector)
	selected := map[string]bool{}
	for _, ns := range namespaces.Items {
		if sel.Matches(withName(ns.Labels, ns.Name)) {
			selected[ns.Name] = true
		}
	}
	var entries []*v1alpha1.NamespacePreview
	total := 0
	for i := range pv.Namespaces {
		if e := &pv.Namespaces[i]; selected[e.Namespace] {
			entries = append(entries, e)
			total += int(e.Denied)
		}
	}
	if total == 0 {
		return nil, nil
	}
	head := fmt.Sprintf("slimgate: Enforce would deny %d running %s in %d %s:", total, plural(total, "workload"),
		len(entries), plural(len(entries), "namespace"))
	return append([]string{head}, listed(entries, total, true)...), nil
}

// listed names the first MaxListed workloads of entries, one warning
// each ("shop/api (toolchain.go, 612 MB)", without the namespace unless
// withNamespace), then how many more there are of total.
func listed(entries []*v1alpha1.NamespacePreview, total int, withNamespace bool) []string {
	var out []string
	for _, e := range entries {
		for _, w := range e.Workloads {
			if len(out) == MaxListed {
				break
			}
			name := w.Kind + "/" + w.Name
			if withNamespace {
				name = e.Namespace + "/" + w.Name
			}
			about := w.Rule
			if w.BloatBytes > 0 {
				about += ", " + policy.HumanBytes(w.BloatBytes)
			}
			out = append(out, fmt.Sprintf("  %s (%s)", name, about))
		}
	}
	if more := total - len(out); more > 0 {
		out = append(out, fmt.Sprintf("  and %d more", more))
	}
	return out
}

// changed reports whether an update of a policy already in Enforce mode
// changes what it would deny: a change to Enforce, to its selector or to
// its rules.
func changed(old, cur *v1alpha1.SlimImagePolicy) bool {
	if !enforces(old) {
		return true
	}
	if policy.NamespaceSelector(old.Spec.NamespaceSelector).String() != policy.NamespaceSelector(cur.Spec.NamespaceSelector).String() {
		return true
	}
	return Fingerprint(&old.Spec) != Fingerprint(&cur.Spec)
}

// enforces reports whether a policy is in Enforce mode (the default).
func enforces(p *v1alpha1.SlimImagePolicy) bool {
	return p.DeletionTimestamp == nil && cmp.Or(p.Spec.Mode, v1alpha1.ModeEnforce) == v1alpha1.ModeEnforce
}

// listPolicies lists the policies, sorted by name.
func listPolicies(ctx context.Context, r client.Reader) ([]*v1alpha1.SlimImagePolicy, error) {
	var list v1alpha1.SlimImagePolicyList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	out := make([]*v1alpha1.SlimImagePolicy, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	slices.SortFunc(out, func(a, b *v1alpha1.SlimImagePolicy) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// withName returns a namespace's labels with the name label the API
// server sets, which a review's object may not carry yet.
func withName(l map[string]string, name string) labels.Set {
	out := make(labels.Set, len(l)+1)
	for k, v := range l {
		out[k] = v
	}
	out[corev1.LabelMetadataName] = name
	return out
}

// decodeReview reads the object of a review of kind, and on UPDATE its
// old object; it returns the response when there is nothing to preview.
func decodeReview(req admission.Request, kind string, cur, old any) *admission.Response {
	if req.Kind.Kind != kind || (req.Operation != "CREATE" && req.Operation != "UPDATE") {
		resp := admission.Allowed("slimgate previews the creation and update of " + kind + " only")
		return &resp
	}
	raws := []runtime.RawExtension{req.Object}
	into := []any{cur}
	if req.Operation == "UPDATE" {
		raws, into = append(raws, req.OldObject), append(into, old)
	}
	for i, raw := range raws {
		err := errors.New("empty object")
		if len(raw.Raw) > 0 {
			err = json.Unmarshal(raw.Raw, into[i])
		}
		if err != nil {
			resp := admission.Allowed("not previewed: " + err.Error())
			return &resp
		}
	}
	return nil
}

// plural is noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
