package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// target is one place a reference is read from: a mirror endpoint of its
// registry or the registry itself.
type target struct {
	// repo is the repository as the target names it: on a mirror, its
	// host and the upstream's repository path (after the mirror's prefix).
	repo name.Repository
	// mirror: a mirror endpoint, checked against the egress rules before
	// it is contacted (the upstream is checked by prepare).
	mirror bool
	// plain: the mirror was configured with an http:// endpoint.
	plain bool
}

// targets lists where p is read from, in order: its registry's mirror
// endpoints (for a tag only those that may resolve tags), then the
// registry itself unless the mirror turns fallback off.
func (r *Remote) targets(p prepared) ([]target, error) {
	upstream := target{repo: p.ref.Context()}
	m, ok := r.opts.Mirrors.For(p.host)
	if !ok {
		return []target{upstream}, nil
	}
	_, isTag := p.ref.(name.Tag)
	ts := make([]target, 0, len(m.Endpoints)+1)
	for _, e := range m.Endpoints {
		if isTag && !e.Resolve {
			continue
		}
		repo, err := name.NewRepository(e.Host + "/" + e.Repository(upstream.repo.RepositoryStr()))
		if err != nil {
			return nil, reasoned(ReasonBadReference, fmt.Errorf("naming %s on mirror %s: %w", p.repo, e, err))
		}
		ts = append(ts, target{repo: repo, mirror: true, plain: e.Scheme == "http"})
	}
	if m.Fallback {
		ts = append(ts, upstream)
	}
	if len(ts) == 0 {
		return nil, reasoned(ReasonUnavailable, fmt.Errorf("no mirror of %s may resolve tags and fallback to it is off", p.host))
	}
	return ts, nil
}

// fetch does the network part of Inspect for one prepared reference: it
// reads it from each target in turn, as containerd pulls, until one
// serves it. A target that fails for its own reasons (not found,
// unreachable, refused, credentials, its circuit open) passes the turn to
// the next; content that fails its checks ends the search, since for a
// tag it is what the node would run and for a digest nobody may serve
// other content. When every target failed, the failure reported is the
// first that is not "not found", as containerd reports it.
func (r *Remote) fetch(ctx context.Context, p prepared, req Request) (*Inspection, error) {
	ts, err := r.targets(p)
	if err != nil {
		return nil, err
	}
	var chosen error
	tried := make([]string, 0, len(ts))
	for i, t := range ts {
		insp, err := r.fetchFrom(ctx, p, req, t)
		if err == nil || len(ts) == 1 {
			return insp, err
		}
		reason := reasonOf(err)
		tried = append(tried, t.repo.RegistryStr()+": "+string(reason))
		if chosen == nil && (reason != ReasonNotFound || i == len(ts)-1) {
			chosen = err
		}
		if ctx.Err() != nil || !passesTurn(reason) {
			chosen = err
			break
		}
		r.log.V(1).Info("mirror failed; trying the next endpoint", "reference", p.refName, "endpoint", t.repo.RegistryStr(), "error", err.Error())
	}
	if len(tried) == 1 {
		return nil, chosen
	}
	return nil, fmt.Errorf("%w (tried %s)", chosen, strings.Join(tried, ", "))
}

// passesTurn reports whether a target's failure lets the next target try.
func passesTurn(reason Reason) bool {
	switch reason {
	case ReasonInvalid, ReasonTooLarge, ReasonBadReference:
		return false
	}
	return true
}

// checkMirror applies the egress rules to a mirror target before it is
// contacted: the registries allowed, private networks, and plain HTTP only
// to hosts listed as insecure, exactly as for the registry a workload
// names.
func (r *Remote) checkMirror(t target, rules EgressRules) error {
	host := t.repo.RegistryStr()
	err := rules.CheckRegistry(host, r.opts.EgressExempt)
	if err == nil && t.plain {
		err = rules.CheckPlainHTTP(host)
	}
	if err != nil {
		return reasoned(ReasonEgressRefused, fmt.Errorf("mirror %s: %w", host, err))
	}
	return nil
}

// fetchFrom reads p from one target, through the target's circuit breaker.
func (r *Remote) fetchFrom(ctx context.Context, p prepared, req Request, t target) (*Inspection, error) {
	host := t.repo.RegistryStr()
	if ok, until := r.breaker.allow(host); !ok {
		r.metrics.request(host, "breaker_open")
		return nil, reasoned(ReasonUnavailable, fmt.Errorf("registry %s failed repeatedly; not contacted until %s", host, until.Format(time.RFC3339)))
	}
	start := r.opts.Now()
	insp, err := r.fetchOnce(ctx, p, req, t)
	r.breaker.record(host, r.verdict(ctx, err))
	if err != nil {
		r.log.V(1).Info("image inspection failed", "reference", p.refName, "registry", host, "error", err.Error())
	} else {
		r.log.V(1).Info("image inspected", "reference", p.refName, "registry", host, "digest", insp.Digest, "platforms", len(insp.Images), "elapsed", r.opts.Now().Sub(start))
	}
	return insp, err
}
