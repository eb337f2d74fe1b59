package registry

import (
	"context"
	"sync"
	"time"
)

// breaker is a per-registry circuit breaker: after threshold consecutive
// failures within window it opens for cooldown, then lets one probe
// through (half-open); the probe's outcome closes or re-opens it.
type breaker struct {
	mu        sync.Mutex
	threshold int
	window    time.Duration
	cooldown  time.Duration
	now       func() time.Time
	hosts     map[string]*breakerState
}

type breakerState struct {
	failures  int
	first     time.Time // first failure of the current run
	openUntil time.Time
	probing   bool
}

// verdict is what one fetch says about its registry.
type verdict int

const (
	// healthy: the registry answered, even if the answer was an error of
	// the image or the credentials.
	healthy verdict = iota
	// unwell: the registry failed (unreachable, 5xx, or too slow for our
	// own transport's timeouts).
	unwell
	// unknown: the caller gave up first (its deadline or cancellation);
	// that says nothing about the registry.
	unknown
)

// verdict judges a fetch for the breaker. A failure counts against the
// registry only when it is the registry's kind of failure and the
// caller's context was still live when it happened: one review's tight
// budget must not open a registry's circuit for everyone.
func (r *Remote) verdict(ctx context.Context, err error) verdict {
	switch {
	case err == nil:
		return healthy
	case ctx.Err() != nil:
		return unknown
	case countsAgainstRegistry(r.toInspectionError("", err).Reason):
		return unwell
	}
	return healthy
}

func newBreaker(threshold int, window, cooldown time.Duration, now func() time.Time) *breaker {
	return &breaker{threshold: threshold, window: window, cooldown: cooldown, now: now, hosts: map[string]*breakerState{}}
}

// allow reports whether a request to host may go ahead, and until when the
// breaker stays open if not.
func (b *breaker) allow(host string) (bool, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.hosts[host]
	if s == nil || s.openUntil.IsZero() {
		return true, time.Time{}
	}
	if b.now().Before(s.openUntil) || s.probing {
		return false, s.openUntil
	}
	s.probing = true // half-open: this caller is the probe
	return true, time.Time{}
}

// record notes what a request to host said about it. An unknown verdict
// changes nothing, except that a probe it ends is released: the next
// caller probes again.
func (b *breaker) record(host string, v verdict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.hosts[host]
	switch v {
	case healthy:
		if s != nil {
			delete(b.hosts, host)
		}
		return
	case unknown:
		if s != nil {
			s.probing = false
		}
		return
	}
	now := b.now()
	if s == nil {
		if len(b.hosts) >= maxBreakerHosts {
			clear(b.hosts)
		}
		s = &breakerState{}
		b.hosts[host] = s
	}
	if s.probing || !s.openUntil.IsZero() {
		s.probing = false
		s.openUntil = now.Add(b.cooldown)
		return
	}
	if s.failures == 0 || now.Sub(s.first) > b.window {
		s.failures, s.first = 0, now
	}
	s.failures++
	if s.failures >= b.threshold {
		s.openUntil = now.Add(b.cooldown)
	}
}

// maxBreakerHosts bounds the breaker's memory; past it the state is reset.
const maxBreakerHosts = 4096
