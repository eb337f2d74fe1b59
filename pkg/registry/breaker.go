package registry

import (
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

// record notes the outcome of a request to host. Only failures that say
// something about the registry (unreachable, 5xx, timeouts) count.
func (b *breaker) record(host string, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.hosts[host]
	if !failed {
		if s != nil {
			delete(b.hosts, host)
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
