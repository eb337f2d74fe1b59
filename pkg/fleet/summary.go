package fleet

import (
	"cmp"
	"slices"
)

// Summary is what one policy found in a scan.
type Summary struct {
	// Policy names the policy.
	Policy string
	// WorkloadsScanned counts the workloads of the namespaces it selects.
	WorkloadsScanned int
	// WorkloadsInViolation counts those with an image that violates it.
	WorkloadsInViolation int
	// Namespaces holds one entry per namespace it selects that has
	// workloads, sorted by name.
	Namespaces []NamespaceSummary
}

// NamespaceSummary is what one policy found in one namespace.
type NamespaceSummary struct {
	Namespace string
	// Workloads counts the workloads scanned there.
	Workloads int
	// InViolation counts those in violation.
	InViolation int
	// BloatBytes sums the toolchain bytes of the images in violation
	// there, each image counted once per workload.
	BloatBytes int64
}

// NamespacesAffected counts the namespaces with a workload in violation.
func (s *Summary) NamespacesAffected() int {
	n := 0
	for _, ns := range s.Namespaces {
		if ns.InViolation > 0 {
			n++
		}
	}
	return n
}

// Top returns at most n namespaces with workloads in violation, the most
// first (ties by name).
func (s *Summary) Top(n int) []NamespaceSummary {
	var out []NamespaceSummary
	for _, ns := range s.Namespaces {
		if ns.InViolation > 0 {
			out = append(out, ns)
		}
	}
	slices.SortStableFunc(out, func(a, b NamespaceSummary) int { return cmp.Compare(b.InViolation, a.InViolation) })
	return out[:min(n, len(out))]
}

// Summarise sums up scan results per policy, sorted by policy name.
func Summarise(results []WorkloadResult) []Summary {
	byPolicy := map[string]*Summary{}
	nsIndex := map[[2]string]int{}
	for i := range results {
		w := &results[i]
		for _, p := range w.Policies {
			s := byPolicy[p]
			if s == nil {
				s = &Summary{Policy: p}
				byPolicy[p] = s
			}
			at, ok := nsIndex[[2]string{p, w.Namespace}]
			if !ok {
				at = len(s.Namespaces)
				nsIndex[[2]string{p, w.Namespace}] = at
				s.Namespaces = append(s.Namespaces, NamespaceSummary{Namespace: w.Namespace})
			}
			ns := &s.Namespaces[at]
			s.WorkloadsScanned++
			ns.Workloads++
			if !w.InViolation(p) {
				continue
			}
			s.WorkloadsInViolation++
			ns.InViolation++
			ns.BloatBytes += bloatOf(w, p)
		}
	}
	out := make([]Summary, 0, len(byPolicy))
	for _, s := range byPolicy {
		slices.SortFunc(s.Namespaces, func(a, b NamespaceSummary) int { return cmp.Compare(a.Namespace, b.Namespace) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Summary) int { return cmp.Compare(a.Policy, b.Policy) })
	return out
}

// bloatOf sums the toolchain bytes of a workload's images that violate
// the policy, each image (by digest, or reference when not inspected)
// once.
func bloatOf(w *WorkloadResult, policyName string) int64 {
	seen := map[string]bool{}
	var n int64
	for i := range w.Images {
		r := &w.Images[i]
		key := cmp.Or(r.Digest, r.Reference)
		if r.Policy != policyName || !r.Violates() || seen[key] {
			continue
		}
		seen[key] = true
		n += r.BloatBytes
	}
	return n
}
