package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
)

// Compiled is a policy spec prepared once for many evaluations: defaults
// applied, rules selected, namespace selector and exclusion globs
// compiled. It is immutable and safe for concurrent use.
type Compiled struct {
	spec   *v1alpha1.SlimImagePolicySpec
	action Action
	// det is the toolchain catalog the policy applies.
	det *detector
	// notes are what every result says about the policy itself.
	notes    []string
	sel      selection
	selector labels.Selector
	exclude  ImageGlobs
}

// Compile validates a policy spec and prepares it for evaluation; a nil
// spec is the built-in default policy. The spec is copied: later changes
// to it do not reach the Compiled.
//
// An invalid spec still compiles, and the error lists every problem with
// its field path, as Validate does. The Compiled then applies what it can,
// never less than it understood: malformed globs and unknown rule ids match
// nothing (each result notes the ignored rule ids), an unknown mode is
// Enforce, and a selector that does not parse selects no namespace. Callers
// that can refuse a policy (Load, the CLI) check the error; the webhook
// keeps applying a policy the API server stored while its status reports
// the problems.
func Compile(spec *v1alpha1.SlimImagePolicySpec) (*Compiled, error) {
	if spec == nil {
		spec = &Default().Spec
	}
	s := spec.DeepCopy()
	SetDefaults(s)
	// Custom toolchains that do not compile are left out; Validate below
	// reports them.
	det, _ := customRules(field.NewPath("spec", "toolchains", "custom"), s.Toolchains.Custom)
	c := &Compiled{
		spec:     s,
		action:   ActionFor(s.Mode),
		det:      det,
		sel:      selectFrom(det.rules, s.Toolchains),
		selector: namespaceSelector(s.NamespaceSelector),
	}
	if s.Mode != v1alpha1.ModeEnforce && c.action == ActionDeny {
		c.notes = append(c.notes, fmt.Sprintf("policy mode %q is not Enforce, Warn or Audit: treated as Enforce", s.Mode))
	}
	if len(c.sel.unknown) > 0 {
		c.notes = append(c.notes, fmt.Sprintf("policy names unknown rules %q: ignored", c.sel.unknown))
	}
	c.exclude = CompileImageGlobs(s.Exclude.Images)
	if errs := Validate(s); len(errs) > 0 {
		return c, fmt.Errorf("invalid policy: %w", errs.ToAggregate())
	}
	return c, nil
}

// namespaceSelector compiles spec.namespaceSelector: absent selects every
// namespace, unparseable none.
func namespaceSelector(ls *metav1.LabelSelector) labels.Selector {
	if ls == nil {
		return labels.Everything()
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return labels.Nothing()
	}
	return sel
}

// Spec returns the compiled spec, defaults applied. Callers only read it.
func (c *Compiled) Spec() *v1alpha1.SlimImagePolicySpec { return c.spec }

// SelectsNamespace reports whether the policy applies to a namespace with
// these labels.
func (c *Compiled) SelectsNamespace(nsLabels map[string]string) bool {
	return c.selector.Matches(labels.Set(nsLabels))
}

// ExcludesEphemeralContainers reports whether the policy leaves the images
// of ephemeral (debug) containers alone.
func (c *Compiled) ExcludesEphemeralContainers() bool {
	e := c.spec.Exclude.EphemeralContainers
	return e == nil || *e
}

// ExcludesImage reports whether a reference matches an exclude.images glob
// as written or in a normalised spelling: "golang:1" is also matched as
// "index.docker.io/library/golang:1" and "docker.io/library/golang:1".
func (c *Compiled) ExcludesImage(ref string) bool { return c.exclude.Match(ref) }

// ImageGlobs is a list of image reference globs, matched against a
// reference as written and in its normalised spellings. The zero
// ImageGlobs matches nothing.
type ImageGlobs struct {
	globs []glob.Pattern
	// hub is set when a glob could match a Docker Hub spelling
	// ("index.docker.io/...", "docker.io/...").
	hub bool
}

// CompileImageGlobs compiles image reference globs; those that do not
// compile are left out (validation reports them).
func CompileImageGlobs(patterns []string) ImageGlobs {
	var g ImageGlobs
	for _, p := range patterns {
		if c, err := glob.Compile(p); err == nil {
			g.globs = append(g.globs, c)
			g.hub = g.hub || mayStartWith(c, name.DefaultRegistry) || mayStartWith(c, "docker.io")
		}
	}
	return g
}

// Match reports whether ref matches a glob as written or in a normalised
// spelling: "golang:1" is also matched as
// "index.docker.io/library/golang:1" and "docker.io/library/golang:1".
func (g ImageGlobs) Match(ref string) bool {
	if len(g.globs) == 0 {
		return false
	}
	if g.matchAny(ref) {
		return true
	}
	if !g.mayMatchNormalised(ref) {
		return false
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return false
	}
	full := r.Name()
	if g.matchAny(full) {
		return true
	}
	rest, ok := strings.CutPrefix(full, name.DefaultRegistry+"/")
	return ok && g.matchAny("docker.io/"+rest)
}

func (g ImageGlobs) matchAny(s string) bool {
	for _, p := range g.globs {
		if p.Match(s) {
			return true
		}
	}
	return false
}

// mayMatchNormalised reports whether a glob could match a normalised
// spelling of ref, so that only then is ref parsed (a warm review would
// otherwise spend most of its allocations here). The name package spells
// a reference's registry as its first component, when that names a host,
// or as Docker Hub: every normalised spelling starts with that component,
// "index.docker.io/" or "docker.io/" and a slash.
func (g ImageGlobs) mayMatchNormalised(ref string) bool {
	if g.hub {
		return true
	}
	host, _, ok := strings.Cut(ref, "/")
	return ok && slices.ContainsFunc(g.globs, func(p glob.Pattern) bool { return mayStartWith(p, host) })
}

// mayStartWith reports whether g could match a string that starts with
// host and a slash: its literal prefix and that start agree as far as
// both go.
func mayStartWith(g glob.Pattern, host string) bool {
	p := g.LiteralPrefix()
	if len(p) <= len(host) {
		return strings.HasPrefix(host, p)
	}
	return strings.HasPrefix(p, host) && p[len(host)] == '/'
}
