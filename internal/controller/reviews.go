package controller

import (
	"crypto/sha256"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// uidKey stands for a Pod UID in the records: the first 12 bytes of its
// SHA-256, small enough to publish thousands, wide enough (96 bits) that
// two Pods never share one.
type uidKey [12]byte

func keyOf(uid types.UID) uidKey {
	sum := sha256.Sum256([]byte(uid))
	var k uidKey
	copy(k[:], sum[:])
	return k
}

// DefaultMaxReviews bounds the reviews a ReviewLog remembers.
const DefaultMaxReviews = 100000

// ReviewLog is this replica's record of the Pod CREATEs its webhook
// reviewed and admitted (admission.ReviewLog), by UID: the API server sends the name
// and UID it generated for the Pod in the review, so the record matches
// the Pod it then stores. It is bounded: beyond max the oldest review is
// forgotten, and the log no longer speaks for the time before it. The
// reviews not yet published (ReviewPublisher) wait in it, bounded too.
type ReviewLog struct {
	mu    sync.Mutex
	max   int
	seen  map[uidKey]struct{}
	ring  []logged // the reviews remembered, oldest at head once full
	head  int
	start time.Time // when the log began
	since time.Time // the log holds every review of a Pod created after since

	pending []uidKey
	// lostBefore is when the last review that could not wait to be
	// published was made: the published record no longer speaks for the
	// time before it.
	lostBefore time.Time
}

type logged struct {
	key uidKey
	at  time.Time
}

// NewReviewLog returns an empty log of at most limit reviews (0:
// DefaultMaxReviews), complete from now on.
func NewReviewLog(limit int) *ReviewLog {
	if limit <= 0 {
		limit = DefaultMaxReviews
	}
	now := time.Now()
	return &ReviewLog{max: limit, seen: map[uidKey]struct{}{}, ring: make([]logged, 0, min(limit, 1024)), start: now, since: now}
}

// Reviewed logs the review of a Pod's creation; a Pod without a UID (not
// sent by an API server) is not logged.
func (l *ReviewLog) Reviewed(pod client.Object) {
	if pod.GetUID() == "" {
		return
	}
	l.add(keyOf(pod.GetUID()), time.Now())
}

func (l *ReviewLog) add(k uidKey, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.seen[k]; dup {
		return
	}
	l.seen[k] = struct{}{}
	if len(l.ring) < l.max {
		l.ring = append(l.ring, logged{k, now})
	} else {
		old := l.ring[l.head]
		delete(l.seen, old.key)
		l.since = old.at
		l.ring[l.head] = logged{k, now}
		l.head = (l.head + 1) % l.max
	}
	if len(l.pending) >= l.max {
		l.pending = l.pending[1:]
		l.lostBefore = now
	}
	l.pending = append(l.pending, k)
}

// has reports whether the log holds the review of the Pod with key k.
func (l *ReviewLog) has(k uidKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.seen[k]
	return ok
}

// completeSince is when the log starts to hold every review, and whether
// that is later than the log began (reviews were forgotten).
func (l *ReviewLog) completeSince() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since, l.since.After(l.start)
}

// takePending returns the reviews not yet handed out for publishing, and
// the time before which some were lost (zero when none was).
func (l *ReviewLog) takePending() ([]uidKey, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out, lost := l.pending, l.lostBefore
	l.pending, l.lostBefore = nil, time.Time{}
	return out, lost
}
