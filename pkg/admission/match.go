package admission

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/exception"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// compiledPolicy is a SlimImagePolicy as the handler applies it, built once
// per object generation (UID and resourceVersion): selector, globs and
// rules are never parsed per request.
type compiledPolicy struct {
	// object is the policy with defaults applied: its name, mode and
	// onInspectionError speak in messages and Events.
	object   *v1alpha1.SlimImagePolicy
	compiled *policy.Compiled
	// request is the registry request the policy allows, less the
	// reference and credentials; rules names it (see fetchKey).
	request registry.Request
	rules   string
	// gate is the policy's spec.exceptions.
	gate exception.Gate
}

func newCompiledPolicy(ctx context.Context, p *v1alpha1.SlimImagePolicy) *compiledPolicy {
	c, err := policy.Compile(&p.Spec)
	if err != nil {
		// The API server stored it: apply what it understood, as the
		// status reconciler's Ready condition says.
		logf.FromContext(ctx).Info("policy is invalid; applying what it understood", "policy", p.Name, "error", err.Error())
	}
	obj := p.DeepCopy()
	policy.SetDefaults(&obj.Spec)
	spec := c.Spec()
	r := registry.Request{
		Platforms: spec.Platforms,
		Egress: registry.EgressRules{
			Enabled:              true,
			AllowRegistries:      spec.Registries.Allow,
			AllowPrivateNetworks: spec.Registries.AllowPrivateNetworks,
			Insecure:             spec.Registries.Insecure,
		},
	}
	return &compiledPolicy{object: obj, compiled: c, request: r, rules: rulesKey(r), gate: exception.NewGate(spec)}
}

// current reports whether the entry was compiled from this object's
// generation. Objects without a resourceVersion (not from an API server)
// are never taken as current.
func (c *compiledPolicy) current(p *v1alpha1.SlimImagePolicy) bool {
	return p.ResourceVersion != "" && c.object.UID == p.UID && c.object.ResourceVersion == p.ResourceVersion
}

// excludes reports whether the policy leaves this image alone: ephemeral
// containers (unless exclude.ephemeralContainers is false) and references
// matching an exclude.images glob in any of their spellings.
func (c *compiledPolicy) excludes(img Image) bool {
	if img.Source == sourceEphemeralContainer && c.compiled.ExcludesEphemeralContainers() {
		return true
	}
	return c.compiled.ExcludesImage(img.Reference)
}

// rulesKey names the egress rules and platforms of a request.
func rulesKey(r registry.Request) string {
	e := r.Egress
	return strings.Join([]string{strconv.FormatBool(e.Enabled), strconv.FormatBool(e.AllowPrivateNetworks),
		strings.Join(e.AllowRegistries, ","), strings.Join(e.Insecure, ","), strings.Join(r.Platforms, ",")}, "|")
}

// policySet holds the compiled policies of the latest list. Reviews read
// it without locking; a list that differs from it (a policy added,
// changed or deleted) builds the next one, reusing the entries still
// current, so it holds exactly the listed policies and never grows beyond
// them.
type policySet struct {
	mu     sync.Mutex // serialises rebuilds
	latest atomic.Pointer[compiledList]
}

// compiledList is the compiled form of one policy list, sorted by name.
type compiledList struct {
	sorted []*compiledPolicy
	byName map[string]*compiledPolicy
}

// matches reports whether the list was compiled from exactly these objects.
func (l *compiledList) matches(items []v1alpha1.SlimImagePolicy) bool {
	if l == nil || len(l.sorted) != len(items) {
		return false
	}
	for i := range items {
		if c, ok := l.byName[items[i].Name]; !ok || !c.current(&items[i]) {
			return false
		}
	}
	return true
}

// compile returns the compiled form of the listed policies, sorted by name.
func (s *policySet) compile(ctx context.Context, items []v1alpha1.SlimImagePolicy) []*compiledPolicy {
	if l := s.latest.Load(); l.matches(items) {
		return l.sorted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.latest.Load()
	if prev.matches(items) {
		return prev.sorted
	}
	next := &compiledList{byName: make(map[string]*compiledPolicy, len(items))}
	for i := range items {
		p := &items[i]
		var c *compiledPolicy
		if prev != nil {
			c = prev.byName[p.Name]
		}
		if c == nil || !c.current(p) {
			c = newCompiledPolicy(ctx, p)
		}
		next.byName[p.Name] = c
		next.sorted = append(next.sorted, c)
	}
	slices.SortFunc(next.sorted, func(a, b *compiledPolicy) int { return strings.Compare(a.object.Name, b.object.Name) })
	s.latest.Store(next)
	return next.sorted
}
