package events

import (
	"container/list"
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// key identifies one Event: the fields an events.k8s.io/v1 Event may not
// change once created, but the note (the first occurrence's stays).
type key struct {
	regarding, related corev1.ObjectReference
	image              string
	reason, action     string
}

// occurrence is one recorded decision about one image.
type occurrence struct {
	key
	note string
	at   time.Time
}

// entry is one Event being counted.
type entry struct {
	key
	note        string
	first, last time.Time // first and last occurrence
	count       int32     // occurrences seen
	written     int32     // occurrences the Event on the API server counts
	name        string    // the Event's name, once created
	tried       time.Time // last write attempt
	elem        *list.Element
}

// dirty reports whether the Event lags behind the occurrences.
func (e *entry) dirty() bool { return e.count > e.written }

// writeFunc writes an entry's Event with its current count; on success it
// sets e.name and e.written.
type writeFunc func(ctx context.Context, e *entry, now time.Time) error

// aggregator counts occurrences per key and writes each key's Event: at
// once for its first occurrence, then at most once per interval while
// more occur. It keeps at most maxKeys keys, forgetting the one seen least
// recently. It is used by one goroutine and takes the time as an
// argument, so tests drive it without a clock.
type aggregator struct {
	interval  time.Duration
	maxKeys   int
	write     writeFunc
	unwritten prometheus.Counter
	entries   map[key]*entry
	recent    *list.List // of *entry, most recently seen first
	pending   map[*entry]struct{}
}

func newAggregator(interval time.Duration, maxKeys int, write writeFunc, unwritten prometheus.Counter) *aggregator {
	return &aggregator{interval: interval, maxKeys: maxKeys, write: write, unwritten: unwritten,
		entries: map[key]*entry{}, recent: list.New(), pending: map[*entry]struct{}{}}
}

// observe counts one occurrence; a key's first is written at once.
func (a *aggregator) observe(ctx context.Context, o occurrence, now time.Time) {
	if e := a.entries[o.key]; e != nil {
		e.count++
		e.last = o.at
		a.recent.MoveToFront(e.elem)
		a.pending[e] = struct{}{}
		return
	}
	if len(a.entries) >= a.maxKeys {
		a.evict(ctx, now)
	}
	e := &entry{key: o.key, note: o.note, first: o.at, last: o.at, count: 1}
	e.elem = a.recent.PushFront(e)
	a.entries[o.key] = e
	a.pending[e] = struct{}{}
	a.flush(ctx, e, now)
}

// evict forgets the key seen least recently, after a last write of its
// count; occurrences that write cannot bring to the API server are
// counted as unwritten.
func (a *aggregator) evict(ctx context.Context, now time.Time) {
	back := a.recent.Back()
	if back == nil {
		return
	}
	e := back.Value.(*entry)
	if e.dirty() {
		a.flush(ctx, e, now)
	}
	a.forget(e)
}

func (a *aggregator) forget(e *entry) {
	if e.dirty() {
		a.unwritten.Add(float64(e.count - e.written))
	}
	a.recent.Remove(e.elem)
	delete(a.entries, e.key)
	delete(a.pending, e)
}

// flushDue writes the Events whose counts lag and whose last write is at
// least an interval old.
func (a *aggregator) flushDue(ctx context.Context, now time.Time) {
	for e := range a.pending {
		if now.Sub(e.tried) >= a.interval {
			a.flush(ctx, e, now)
		}
	}
}

// flushAll writes every Event whose count lags, due or not, and forgets
// the counts that could not be written: the recorder is stopping.
func (a *aggregator) flushAll(ctx context.Context, now time.Time) {
	for e := range a.pending {
		a.flush(ctx, e, now)
	}
	for e := range a.pending {
		a.forget(e)
	}
}

// flush writes e's Event; a failed write is tried again an interval later.
func (a *aggregator) flush(ctx context.Context, e *entry, now time.Time) {
	e.tried = now
	if err := a.write(ctx, e, now); err != nil {
		return
	}
	if !e.dirty() {
		delete(a.pending, e)
	}
}
