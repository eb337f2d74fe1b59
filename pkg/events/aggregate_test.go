package events

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// writes records what an aggregator wrote: per key, the counts written.
type writes struct {
	counts map[key][]int32
	fail   bool
}

func (w *writes) write(_ context.Context, e *entry, _ time.Time) error {
	if w.fail {
		return errors.New("refused")
	}
	if w.counts == nil {
		w.counts = map[key][]int32{}
	}
	w.counts[e.key] = append(w.counts[e.key], e.count)
	e.name, e.written = "written", e.count
	return nil
}

func testKey(name string) key {
	return key{regarding: corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: name}, image: "img:1", reason: ReasonAudited, action: ActionAdmit}
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newTestAggregator(w *writes, maxKeys int) (*aggregator, prometheus.Counter) {
	unwritten := prometheus.NewCounter(prometheus.CounterOpts{Name: "unwritten"})
	return newAggregator(15*time.Second, maxKeys, w.write, unwritten), unwritten
}

// The first occurrence is written at once; the next ones together, once
// an interval has passed since the last write, and then nothing more
// until another occurs.
func TestAggregatorWritesFirstAtOnceThenAtMostPerInterval(t *testing.T) {
	w := &writes{}
	a, _ := newTestAggregator(w, 10)
	ctx := context.Background()
	k := testKey("web")
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	a.observe(ctx, occurrence{key: k, at: at(0)}, at(0))
	if got := w.counts[k]; len(got) != 1 || got[0] != 1 {
		t.Fatalf("after the first occurrence, writes %v, want [1]", got)
	}
	// 51 more within 5 s: nothing is written before the interval is up.
	for i := range 51 {
		now := at(time.Duration(i) * 100 * time.Millisecond)
		a.observe(ctx, occurrence{key: k, at: now}, now)
		a.flushDue(ctx, now)
	}
	a.flushDue(ctx, at(14*time.Second))
	if got := w.counts[k]; len(got) != 1 {
		t.Fatalf("writes before the interval: %v", got)
	}
	a.flushDue(ctx, at(15*time.Second))
	a.flushDue(ctx, at(31*time.Second))
	if got := w.counts[k]; len(got) != 2 || got[1] != 52 {
		t.Fatalf("writes %v, want [1 52]: one more write, with the whole count", got)
	}
	a.observe(ctx, occurrence{key: k, at: at(40 * time.Second)}, at(40*time.Second))
	a.flushDue(ctx, at(46*time.Second))
	if got := w.counts[k]; len(got) != 3 || got[2] != 53 {
		t.Fatalf("writes %v, want [1 52 53]", got)
	}
	if len(a.pending) != 0 {
		t.Errorf("%d entries still pending with every count written", len(a.pending))
	}
}

// Keys are bounded: the one seen least recently is forgotten, after a
// last write of its count; what cannot be written is counted.
func TestAggregatorBoundsKeys(t *testing.T) {
	w := &writes{}
	a, unwritten := newTestAggregator(w, 3)
	ctx := context.Background()
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		k := testKey(fmt.Sprint("p", i))
		a.observe(ctx, occurrence{key: k, at: now}, now)
		a.observe(ctx, occurrence{key: k, at: now}, now) // pending: count 2, 1 written
		if len(a.entries) > 3 || a.recent.Len() > 3 || len(a.pending) > 3 {
			t.Fatalf("after %d keys: %d entries, %d in the list, %d pending; want at most 3", i+1, len(a.entries), a.recent.Len(), len(a.pending))
		}
	}
	// Each evicted key had its second occurrence written on the way out.
	if got := w.counts[testKey("p0")]; len(got) != 2 || got[1] != 2 {
		t.Errorf("evicted key's writes %v, want [1 2]", got)
	}
	if v := value(t, unwritten); v != 0 {
		t.Errorf("%v occurrences unwritten while every write succeeded", v)
	}

	// Writes fail: the evicted keys' occurrences are lost, and counted.
	w.fail = true
	for i := range 5 {
		now := t0.Add(time.Hour + time.Duration(i)*time.Millisecond)
		a.observe(ctx, occurrence{key: testKey(fmt.Sprint("q", i)), at: now}, now)
	}
	// Evicted: p997..p999 (one unwritten each: their first was written),
	// then q0 and q1 (never written).
	if v := value(t, unwritten); v != 5 {
		t.Errorf("unwritten %v, want 5", v)
	}
}

// A failed write is tried again an interval later, not at every tick.
func TestAggregatorRetriesAfterInterval(t *testing.T) {
	w := &writes{fail: true}
	a, _ := newTestAggregator(w, 10)
	ctx := context.Background()
	k := testKey("web")
	a.observe(ctx, occurrence{key: k, at: t0}, t0)
	w.fail = false
	a.flushDue(ctx, t0.Add(time.Second))
	if got := w.counts[k]; len(got) != 0 {
		t.Fatalf("written %v a second after a failure", got)
	}
	a.flushDue(ctx, t0.Add(15*time.Second))
	if got := w.counts[k]; len(got) != 1 || got[0] != 1 {
		t.Fatalf("writes %v, want [1] an interval after the failure", got)
	}
}

// Stopping writes every count due or not, and forgets what fails.
func TestAggregatorFlushAll(t *testing.T) {
	w := &writes{}
	a, unwritten := newTestAggregator(w, 10)
	ctx := context.Background()
	a.observe(ctx, occurrence{key: testKey("a"), at: t0}, t0)
	a.observe(ctx, occurrence{key: testKey("a"), at: t0}, t0)
	a.observe(ctx, occurrence{key: testKey("b"), at: t0}, t0)
	w.fail = true
	a.observe(ctx, occurrence{key: testKey("b"), at: t0}, t0)
	a.observe(ctx, occurrence{key: testKey("b"), at: t0}, t0)
	w.fail = false
	a.flushAll(ctx, t0.Add(time.Second))
	if got := w.counts[testKey("a")]; len(got) != 2 || got[1] != 2 {
		t.Errorf("a: writes %v, want [1 2]", got)
	}
	if got := w.counts[testKey("b")]; len(got) != 2 || got[1] != 3 {
		t.Errorf("b: writes %v, want [1 3]", got)
	}
	if len(a.pending) != 0 || value(t, unwritten) != 0 {
		t.Errorf("pending %d, unwritten %v after a successful final flush", len(a.pending), value(t, unwritten))
	}
	a.observe(ctx, occurrence{key: testKey("a"), at: t0}, t0)
	w.fail = true
	a.flushAll(ctx, t0.Add(2*time.Second))
	if len(a.pending) != 0 || value(t, unwritten) != 1 {
		t.Errorf("pending %d, unwritten %v after a failed final flush; want 0 and 1", len(a.pending), value(t, unwritten))
	}
}
