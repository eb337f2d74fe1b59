package admission

import (
	"sync"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/policy"
)

// maxEvaluations bounds the evaluation cache. When it is full it is
// emptied: the images in use come back within a few reviews.
const maxEvaluations = 4096

// evalCache remembers policy.Evaluate results. Evaluation is pure and its
// inputs are immutable once named: a policy object at one resourceVersion,
// and facts of one manifest digest seen through one reference. A warm
// review then costs a map lookup per image instead of the history analysis
// (the regular expressions over every build step), which dominated it.
type evalCache struct {
	mu      sync.Mutex
	results map[string]policy.Result
}

// evaluate returns policy.Evaluate(&p.Spec, f), from the cache when the
// policy and the facts can be named. Results are shared: callers only read
// them.
func (c *evalCache) evaluate(p *v1alpha1.SlimImagePolicy, f *image.Facts) policy.Result {
	if p.ResourceVersion == "" || f == nil || f.Digest == "" {
		return policy.Evaluate(&p.Spec, f)
	}
	key := p.Name + "\x00" + string(p.UID) + "\x00" + p.ResourceVersion + "\x00" +
		f.Digest + "\x00" + f.IndexDigest + "\x00" + f.Reference
	c.mu.Lock()
	r, ok := c.results[key]
	c.mu.Unlock()
	if ok {
		return r
	}
	r = policy.Evaluate(&p.Spec, f)
	c.mu.Lock()
	if c.results == nil || len(c.results) >= maxEvaluations {
		c.results = make(map[string]policy.Result)
	}
	c.results[key] = r
	c.mu.Unlock()
	return r
}
