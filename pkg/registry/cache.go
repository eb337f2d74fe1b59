package registry

import (
	"container/list"
	"reflect"
	"sync"
	"time"
)

// lru is a small, concurrency-safe least-recently-used cache bounded by
// entry count and by bytes. Each entry is charged what it holds: its key,
// the heap its value reaches (the cache's size function) and entryOverhead.
// An entry may carry an expiry; the zero time means it never expires.
type lru[V any] struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int64
	bytes      int64
	ll         *list.List
	items      map[string]*list.Element
	now        func() time.Time
	size       func(V) int64
}

type lruEntry[V any] struct {
	key     string
	val     V
	size    int64
	expires time.Time
}

// entryOverhead is what an lru entry costs besides its key's bytes and its
// value's heap: the list element, the entry record and the map slot.
const entryOverhead = 160

// newLRU returns an lru; size gives the heap a value holds, nil: heapSize.
func newLRU[V any](maxEntries int, maxBytes int64, now func() time.Time, size func(V) int64) *lru[V] {
	if size == nil {
		size = heapSize[V]
	}
	return &lru[V]{maxEntries: maxEntries, maxBytes: maxBytes, ll: list.New(), items: map[string]*list.Element{}, now: now, size: size}
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

// add stores val under key until ttl passes (0: no expiry). An entry
// costing more than the whole byte budget is not stored.
func (c *lru[V]) add(key string, val V, ttl time.Duration) {
	size := allocSize(len(key)) + c.size(val) + entryOverhead
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

// heapSize estimates the heap bytes v reaches beyond its own inline size:
// string bytes, slice backing arrays (to their capacity: a capped slice
// keeps its whole array alive), map tables and pointees, recursively.
// Interfaces are followed to their dynamic value; functions and channels
// count nothing. It is meant for plain data such as image.Facts, index
// descriptors and failure messages, not for graphs that share or cycle
// (depth is capped at maxSizeDepth).
func heapSize[V any](v V) int64 {
	return reach(reflect.ValueOf(&v).Elem(), 0)
}

// maxSizeDepth bounds heapSize's recursion.
const maxSizeDepth = 16

func reach(v reflect.Value, depth int) int64 {
	if depth > maxSizeDepth {
		return 0
	}
	switch v.Kind() {
	case reflect.String:
		return allocSize(v.Len())
	case reflect.Slice:
		if v.IsNil() {
			return 0
		}
		n := allocSize(v.Cap() * int(v.Type().Elem().Size()))
		if flat(v.Type().Elem()) {
			return n
		}
		all := v.Slice(0, v.Cap())
		for i := range all.Len() {
			n += reach(all.Index(i), depth+1)
		}
		return n
	case reflect.Array:
		var n int64
		for i := range v.Len() {
			n += reach(v.Index(i), depth+1)
		}
		return n
	case reflect.Struct:
		var n int64
		for i := range v.NumField() {
			n += reach(v.Field(i), depth+1)
		}
		return n
	case reflect.Pointer:
		if v.IsNil() {
			return 0
		}
		return allocSize(int(v.Type().Elem().Size())) + reach(v.Elem(), depth+1)
	case reflect.Interface:
		if v.IsNil() {
			return 0
		}
		e := v.Elem()
		n := reach(e, depth+1)
		if e.Kind() != reflect.Pointer {
			n += allocSize(int(e.Type().Size())) // boxed
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return 0
		}
		// Slots of key, value and a control byte, at about two thirds of
		// the table filled.
		slot := int64(v.Type().Key().Size()+v.Type().Elem().Size()) + 1 //nolint:gosec // type sizes are far below 2^63
		n := int64(v.Len()) * slot * 3 / 2
		for it := v.MapRange(); it.Next(); {
			n += reach(it.Key(), depth+1) + reach(it.Value(), depth+1)
		}
		return n
	}
	return 0
}

// flat reports whether values of t hold no pointers: nothing to reach.
func flat(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return flat(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !flat(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// allocSize is the heap an allocation of n bytes takes: rounded up to a
// word, nothing for none.
func allocSize(n int) int64 {
	return int64(n+7) &^ 7
}
