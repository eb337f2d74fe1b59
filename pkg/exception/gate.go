package exception

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// DefaultMaxDuration is spec.exceptions.maxDuration when a policy leaves
// it out: 90 days.
const DefaultMaxDuration = 90 * 24 * time.Hour

// Gate is a policy's spec.exceptions, compiled: whether, where and for
// how long exceptions may waive its findings.
type Gate struct {
	allowed  bool
	selector labels.Selector
	max      time.Duration
}

// NewGate compiles spec.exceptions, defaults applied: allowed, in every
// namespace, for at most DefaultMaxDuration. A namespaceSelector that
// does not parse selects no namespace.
func NewGate(spec *v1alpha1.SlimImagePolicySpec) Gate {
	r := spec.Exceptions
	g := Gate{allowed: r.Allowed == nil || *r.Allowed, selector: labels.Everything(), max: DefaultMaxDuration}
	if r.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(r.NamespaceSelector)
		if err != nil {
			sel = labels.Nothing()
		}
		g.selector = sel
	}
	if r.MaxDuration != nil {
		g.max = r.MaxDuration.Duration
	}
	return g
}

// MaxDuration is the longest an exception may last.
func (g Gate) MaxDuration() time.Duration { return g.max }

// AllowsIn reports whether exceptions in a namespace with these labels
// may waive the policy.
func (g Gate) AllowsIn(nsLabels map[string]string) bool {
	return g.allowed && g.selector.Matches(labels.Set(nsLabels))
}

// Honours returns the exceptions of list (all of one namespace, with
// these labels) that may waive the policy: none where the policy allows
// none, and never one that lasts longer than its maxDuration (it was
// created before the policy said so, or the webhook was not asked).
func (g Gate) Honours(nsLabels map[string]string, list []*Exception) []*Exception {
	if len(list) == 0 || !g.AllowsIn(nsLabels) {
		return nil
	}
	out := make([]*Exception, 0, len(list))
	for _, e := range list {
		if e.Duration() <= g.max {
			out = append(out, e)
		}
	}
	return out
}
