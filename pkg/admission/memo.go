package admission

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/policy"
)

// maxMemo bounds a memo. When it is full it is emptied: the keys in use
// come back within a few reviews.
const maxMemo = 4096

// memo remembers the values of a pure function. Values are shared: callers
// only read them.
type memo[K comparable, V any] struct {
	mu     sync.Mutex
	values map[K]V
}

func (m *memo[K, V]) get(key K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.values[key]
	return v, ok
}

func (m *memo[K, V]) put(key K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.values == nil || len(m.values) >= maxMemo {
		m.values = make(map[K]V)
	}
	m.values[key] = v
}

// evalKey names the inputs of one policy.Evaluate: a policy object at one
// resourceVersion, and facts of one manifest digest seen through one
// reference. Both are immutable once named.
type evalKey struct {
	policy          string
	uid             types.UID
	resourceVersion string
	digest, index   string
	reference       string
}

// evaluate returns policy.Evaluate(&p.Spec, f), remembered when the policy
// and the facts can be named. A warm review then costs a map lookup per
// image instead of the history analysis (the regular expressions over
// every build step), which dominated it.
func (h *Handler) evaluate(p *v1alpha1.SlimImagePolicy, f *image.Facts) policy.Result {
	if p.ResourceVersion == "" || f == nil || f.Digest == "" {
		return policy.Evaluate(&p.Spec, f)
	}
	key := evalKey{policy: p.Name, uid: p.UID, resourceVersion: p.ResourceVersion,
		digest: f.Digest, index: f.IndexDigest, reference: f.Reference}
	if r, ok := h.evals.get(key); ok {
		return r
	}
	r := policy.Evaluate(&p.Spec, f)
	h.evals.put(key, r)
	return r
}

// spellings is spellings(ref), remembered: parsing references is most of
// the cost of matching exclude.images.
func (h *Handler) spellings(ref string) []string {
	if forms, ok := h.names.get(ref); ok {
		return forms
	}
	forms := spellings(ref)
	h.names.put(ref, forms)
	return forms
}
