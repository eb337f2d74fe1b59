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
