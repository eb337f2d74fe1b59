package registry

import (
	"container/list"
	"sync"
	"time"
)

// lru is a small, concurrency-safe least-recently-used cache bounded by
// entry count and by approximate bytes. An entry may carry an expiry; the
// zero time means it never expires.
type lru[V any] struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int64
	bytes      int64
	ll         *list.List
	items      map[string]*list.Element
	now        func() time.Time
}

type lruEntry[V any] struct {
	key     string
	val     V
	size    int64
	expires time.Time
}

func newLRU[V any](maxEntries int, maxBytes int64, now func() time.Time) *lru[V] {
	return &lru[V]{maxEntries: maxEntries, maxBytes: maxBytes, ll: list.New(), items: map[string]*list.Element{}, now: now}
}

// get returns the live value for key.
func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*lruEntry[V])
	if !e.expires.IsZero() && !c.now().Before(e.expires) {
		c.remove(el)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// add stores val under key, costing size bytes, until ttl passes (0: no
// expiry). A value larger than the whole byte budget is not stored.
func (c *lru[V]) add(key string, val V, size int64, ttl time.Duration) {
	if size > c.maxBytes {
		return
	}
	var expires time.Time
	if ttl > 0 {
		expires = c.now().Add(ttl)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key: key, val: val, size: size, expires: expires})
	c.bytes += size
	for c.ll.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.remove(c.ll.Back())
	}
}

func (c *lru[V]) remove(el *list.Element) {
	e := c.ll.Remove(el).(*lruEntry[V])
	delete(c.items, e.key)
	c.bytes -= e.size
}

// len returns the number of entries, live or expired.
func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

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
