package preview

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/policy"
)

// Bounds of a policy's status.preview.
const (
	// MaxWorkloadsPerNamespace is how many workloads a namespace's entry
	// names (its count is always whole).
	MaxWorkloadsPerNamespace = 10
	// MaxWorkloads is how many workloads a preview names in all.
	MaxWorkloads = 500
	// MaxNamespaces is how many namespaces a preview holds.
	MaxNamespaces = 1000
)

// Fingerprint names the rules of a policy spec: all of it but its mode
// and namespaceSelector, defaults applied. Two policies with the same
// fingerprint deny the same workloads in the namespaces both select, in
// Enforce mode.
func Fingerprint(spec *v1alpha1.SlimImagePolicySpec) string {
	s := spec.DeepCopy()
	policy.SetDefaults(s)
	s.Mode, s.NamespaceSelector = "", nil
	b, err := json.Marshal(s)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Build words what a scan under a policy in Enforce mode found: the
// workloads with an image it denies, by namespace, sorted by namespace
// name, within the bounds above (the first namespaces and workloads of
// results are kept).
func Build(results []fleet.WorkloadResult, policyName, rules string, at metav1.Time) *v1alpha1.PreviewStatus {
	out := &v1alpha1.PreviewStatus{ScanTime: at, Rules: rules}
	index := map[string]int{}
	named := 0
	for i := range results {
		w := &results[i]
		rule, bloat, denied := deniedBy(w, policyName)
		if !denied {
			continue
		}
		k, ok := index[w.Namespace]
		if !ok {
			if len(out.Namespaces) == MaxNamespaces {
				continue
			}
			k = len(out.Namespaces)
			index[w.Namespace] = k
			out.Namespaces = append(out.Namespaces, v1alpha1.NamespacePreview{Namespace: w.Namespace})
		}
		ns := &out.Namespaces[k]
		ns.Denied++
		if len(ns.Workloads) < MaxWorkloadsPerNamespace && named < MaxWorkloads {
			ns.Workloads = append(ns.Workloads, v1alpha1.WorkloadPreview{Kind: w.Kind.Kind, Name: w.Name, Rule: rule, BloatBytes: bloat})
			named++
		}
	}
	slices.SortFunc(out.Namespaces, func(a, b v1alpha1.NamespacePreview) int { return cmp.Compare(a.Namespace, b.Namespace) })
	return out
}

// deniedBy reports whether the policy denies an image of the workload,
// with the rule of the first such image and the toolchain bytes of them
// all (each image once).
func deniedBy(w *fleet.WorkloadResult, policyName string) (rule string, bloat int64, denied bool) {
	seen := map[string]bool{}
	for i := range w.Images {
		img := &w.Images[i]
		if img.Policy != policyName || img.Action != policy.ActionDeny {
			continue
		}
		if !denied {
			rule, denied = img.Rule(), true
		}
		if key := cmp.Or(img.Digest, img.Reference); !seen[key] {
			seen[key] = true
			bloat += img.BloatBytes
		}
	}
	return rule, bloat, denied
}
