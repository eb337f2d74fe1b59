package exception

import (
	"slices"
	"strings"
	"time"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
	"slimgate.dev/slimgate/pkg/policy"
)

// MaxPerNamespace is how many exceptions of one namespace a review
// considers: the unexpired ones first by name. A namespace's owners who
// need more write broader ones; a ResourceQuota on
// count/slimimageexceptions.slimgate.dev bounds how many can be created.
const MaxPerNamespace = 64

// ExpiringWithin is how close to its expiry an exception is "expiring":
// reviews it waives get a warning, and the metric counts it apart.
const ExpiringWithin = 7 * 24 * time.Hour

// Exception is a SlimImageException compiled for matching. It is
// immutable and safe for concurrent use.
type Exception struct {
	// Name and Namespace name the object; Reason is its spec.reason.
	Name, Namespace, Reason string
	// Created is its creation time (zero for one read from a file) and
	// Expires its spec.expires.
	Created, Expires time.Time

	policies, rules []glob.Pattern
	images          policy.ImageGlobs
	hasImages       bool
	digests         []string
	workloads       []Workload
	containers      []string
}

// Workload names a workload: the object under review, or one that
// created it.
type Workload struct {
	Kind, Name string
}

// Compile prepares an exception for matching. Entries that do not compile
// (the API server's validation keeps them out) match nothing.
func Compile(e *v1alpha1.SlimImageException) *Exception {
	s := &e.Spec
	c := &Exception{
		Name: e.Name, Namespace: e.Namespace, Reason: s.Reason,
		Created: e.CreationTimestamp.Time, Expires: s.Expires.Time,
		policies:   compileGlobs(s.Policies),
		rules:      compileGlobs(s.Rules),
		images:     policy.CompileImageGlobs(s.Images),
		hasImages:  len(s.Images) > 0,
		digests:    slices.Clone(s.Digests),
		containers: slices.Clone(s.Containers),
	}
	for _, w := range s.Workloads {
		c.workloads = append(c.workloads, Workload{Kind: string(w.Kind), Name: w.Name})
	}
	return c
}

func compileGlobs(patterns []string) []glob.Pattern {
	out := make([]glob.Pattern, 0, len(patterns))
	for _, p := range patterns {
		if g, err := glob.Compile(p); err == nil {
			out = append(out, g)
		}
	}
	return out
}

// ActiveAt reports whether the exception applies at t: before Expires.
func (e *Exception) ActiveAt(t time.Time) bool { return t.Before(e.Expires) }

// ExpiringAt reports whether the exception, active at t, expires within
// ExpiringWithin of it.
func (e *Exception) ExpiringAt(t time.Time) bool {
	return e.ActiveAt(t) && e.Expires.Sub(t) <= ExpiringWithin
}

// Duration is how long the exception lasts, from its creation to its
// expiry; 0 when its creation time is not known (read from a file).
func (e *Exception) Duration() time.Duration {
	if e.Created.IsZero() {
		return 0
	}
	return e.Expires.Sub(e.Created)
}

// Waiver is what a finding the exception waives says of it.
func (e *Exception) Waiver() *policy.Waiver {
	return &policy.Waiver{Exception: e.Name, Namespace: e.Namespace, Reason: e.Reason, Expires: e.Expires}
}

// Subject is what one finding was made about.
type Subject struct {
	// Policy is the name of the policy that made the finding; Rule its
	// rule id.
	Policy, Rule string
	// Image is the reference as the workload writes it.
	Image string
	// Digests are the digests judged: the manifest's and, for an image
	// picked from a multi-platform index, the index's.
	Digests []string
	// Workloads are the object under review and the workloads that
	// created it (Workloads); none for an image judged outside a cluster.
	Workloads []Workload
	// Container names the container or image volume; empty outside a
	// cluster.
	Container string
}

// Covers reports whether the exception waives a finding about s, whatever
// the time: every criterion it sets must hold. The inspection.* rules are
// never waived: an image that could not be read was not judged, and one
// its author made unreadable must not pass for an excepted one.
func (e *Exception) Covers(s Subject) bool {
	if strings.HasPrefix(s.Rule, "inspection.") || (!e.hasImages && len(e.digests) == 0) {
		return false
	}
	if !anyMatch(e.policies, s.Policy) || !anyMatch(e.rules, s.Rule) {
		return false
	}
	if e.hasImages && !e.images.Match(s.Image) {
		return false
	}
	if len(e.digests) > 0 && !slices.ContainsFunc(s.Digests, func(d string) bool { return d != "" && slices.Contains(e.digests, d) }) {
		return false
	}
	if len(e.containers) > 0 && !slices.Contains(e.containers, s.Container) {
		return false
	}
	if len(e.workloads) > 0 && !slices.ContainsFunc(s.Workloads, func(w Workload) bool { return slices.Contains(e.workloads, w) }) {
		return false
	}
	return true
}

func anyMatch(globs []glob.Pattern, s string) bool {
	return slices.ContainsFunc(globs, func(g glob.Pattern) bool { return g.Match(s) })
}

// Select returns the exception objects of one namespace a review at now
// considers: those not being deleted and unexpired, sorted by name, at
// most MaxPerNamespace; and how many such were left out. It reads the
// objects only, so that thousands of them cost no compilation: only the
// ones selected are compiled. all is not modified.
func Select(all []*v1alpha1.SlimImageException, now time.Time) (selected []*v1alpha1.SlimImageException, left int) {
	for _, e := range all {
		if e.DeletionTimestamp == nil && !Expired(e, now) {
			selected = append(selected, e)
		}
	}
	slices.SortFunc(selected, func(a, b *v1alpha1.SlimImageException) int { return strings.Compare(a.Name, b.Name) })
	if len(selected) > MaxPerNamespace {
		return selected[:MaxPerNamespace:MaxPerNamespace], len(selected) - MaxPerNamespace
	}
	return selected, 0
}

// Expired reports whether the exception object no longer applies at now:
// now is its spec.expires or later.
func Expired(e *v1alpha1.SlimImageException, now time.Time) bool {
	return !now.Before(e.Spec.Expires.Time)
}

// Find returns the first exception of list that covers s, or nil.
func Find(list []*Exception, s Subject) *Exception {
	for _, e := range list {
		if e.Covers(s) {
			return e
		}
	}
	return nil
}

// Waive returns r with each finding that an exception of list covers
// marked Excepted, and the verdict recomputed from the findings that
// still count; s gives the policy, image, workloads and container (the
// rule and digests are the finding's and r's). r is not modified (results
// are shared between reviews); used lists the exceptions that waived
// something, each once, in the order first used.
func Waive(r policy.Result, list []*Exception, s Subject) (out policy.Result, used []*Exception) {
	if len(list) == 0 || len(r.Findings) == 0 {
		return r, nil
	}
	s.Digests = []string{r.Digest, r.IndexDigest}
	out = r
	out.Findings = slices.Clone(r.Findings)
	out.Verdict = policy.VerdictAllow
	for i := range out.Findings {
		f := &out.Findings[i]
		s.Rule = f.Rule
		if e := Find(list, s); e != nil && f.Excepted == nil {
			f.Excepted = e.Waiver()
			if !slices.Contains(used, e) {
				used = append(used, e)
			}
		}
		if f.Excepted == nil && f.Action == policy.ActionDeny {
			out.Verdict = policy.VerdictDeny
		}
	}
	return out, used
}
