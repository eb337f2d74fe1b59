package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func podWithUID(uid string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: uid, UID: types.UID(uid)}}
}

// The log remembers at most max reviews: past it, the oldest is forgotten
// and the log speaks only for Pods created after that review. Reviews
// waiting to be published are bounded alike.
func TestReviewLogIsBounded(t *testing.T) {
	l := NewReviewLog(3)
	start, _ := l.completeSince()
	l.Reviewed(&corev1.Pod{}) // no UID: not from an API server
	for i := range 5 {
		l.Reviewed(podWithUID(fmt.Sprint("uid-", i)))
	}
	l.Reviewed(podWithUID("uid-4")) // again: once
	for i, want := range []bool{false, false, true, true, true} {
		if got := l.has(keyOf(types.UID(fmt.Sprint("uid-", i)))); got != want {
			t.Errorf("uid-%d remembered: %v, want %v", i, got, want)
		}
	}
	if len(l.seen) != 3 || len(l.ring) != 3 {
		t.Errorf("%d reviews remembered, %d in the ring, want 3", len(l.seen), len(l.ring))
	}
	since, truncated := l.completeSince()
	if !since.After(start) || !truncated {
		t.Errorf("since %v (start %v), truncated %v: want later than the start, truncated", since, start, truncated)
	}
	pending, lost := l.takePending()
	if len(pending) != 3 || pending[2] != keyOf("uid-4") || lost.IsZero() {
		t.Errorf("pending %d (last %x), lost before %v; want the 3 latest and a time", len(pending), pending[len(pending)-1], lost)
	}
	if pending, lost := l.takePending(); len(pending) != 0 || !lost.IsZero() {
		t.Errorf("pending taken twice: %d, %v", len(pending), lost)
	}
}

func newFakeClient(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	return fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).Build()
}

// readRecord reads the publisher's record back.
func readRecord(t *testing.T, c client.Reader, name string) (record, *corev1.ConfigMap) {
	t.Helper()
	var cm corev1.ConfigMap
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "slimgate-system", Name: name}, &cm); err != nil {
		t.Fatal(err)
	}
	r, err := parseRecord(&cm)
	if err != nil {
		t.Fatal(err)
	}
	return r, &cm
}

// The publisher writes new reviews as chunks, drops the chunks older than
// the window, and, over its bound, the oldest ones, saying from when on
// the record is complete.
func TestReviewPublisher(t *testing.T) {
	c := newFakeClient(t)
	l := NewReviewLog(100)
	p := &ReviewPublisher{Log: l, Client: c, Reader: c, Namespace: "slimgate-system", Name: ReviewsPrefix + "a", Window: time.Minute, MaxPublished: 4}
	ctx := context.Background()
	t0 := l.start.Truncate(time.Millisecond).Add(time.Second) // chunks are named to the millisecond

	l.Reviewed(podWithUID("a1"))
	l.Reviewed(podWithUID("a2"))
	if err := p.publish(ctx, t0); err != nil {
		t.Fatal(err)
	}
	r, cm := readRecord(t, c, p.Name)
	if cm.Labels[ReviewsLabel] != "true" || !r.since.Equal(l.start) || r.truncated || !r.until.Equal(t0) {
		t.Errorf("record %+v, labels %v; want since the log's start, until now", r, cm.Labels)
	}
	if !r.has(keyOf("a1"), t0.Add(-time.Second)) || !r.has(keyOf("a2"), t0) || r.has(keyOf("a3"), time.Time{}) {
		t.Error("the record does not hold exactly a1 and a2")
	}
	if r.has(keyOf("a1"), t0.Add(time.Millisecond)) {
		t.Error("a review published at t0 is found among the chunks after t0")
	}

	// Nothing new: nothing written until a heartbeat is due.
	before := cm.ResourceVersion
	if err := p.publish(ctx, t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, cm := readRecord(t, c, p.Name); cm.ResourceVersion != before {
		t.Error("written with nothing new")
	}
	if err := p.publish(ctx, t0.Add(16*time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, _ := readRecord(t, c, p.Name); !r.until.Equal(t0.Add(16 * time.Second)) {
		t.Errorf("heartbeat: until %v", r.until)
	}

	// Past the window, the first chunk goes; over the bound (4), the
	// oldest chunk goes too and the record says it is cut.
	l.Reviewed(podWithUID("b1"))
	if err := p.publish(ctx, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"c1", "c2", "c3", "c4"} {
		l.Reviewed(podWithUID(uid))
	}
	t2 := t0.Add(40 * time.Second)
	if err := p.publish(ctx, t2); err != nil {
		t.Fatal(err)
	}
	r, cm = readRecord(t, c, p.Name)
	if len(cm.BinaryData) != 1 || !r.has(keyOf("c4"), t2) || r.has(keyOf("b1"), time.Time{}) || r.has(keyOf("a1"), time.Time{}) {
		t.Errorf("%d chunks; want only the last one", len(cm.BinaryData))
	}
	if !r.truncated || !r.since.Equal(t0.Add(30*time.Second).Truncate(time.Millisecond)) {
		t.Errorf("since %v truncated %v; want the dropped chunk's time, truncated", r.since, r.truncated)
	}
	if err := p.publish(ctx, t2.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, cm = readRecord(t, c, p.Name); len(cm.BinaryData) != 0 {
		t.Errorf("%d chunks left past the window", len(cm.BinaryData))
	}
}

// A record someone deleted is written anew with everything it holds.
func TestReviewPublisherRecreatesRecord(t *testing.T) {
	c := newFakeClient(t)
	l := NewReviewLog(100)
	p := &ReviewPublisher{Log: l, Client: c, Reader: c, Namespace: "slimgate-system", Name: ReviewsPrefix + "a"}
	ctx := context.Background()
	l.Reviewed(podWithUID("a1"))
	if err := p.publish(ctx, l.start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, cm := readRecord(t, c, p.Name)
	if err := c.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}
	l.Reviewed(podWithUID("a2"))
	if err := p.publish(ctx, l.start.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, _ := readRecord(t, c, p.Name); !r.has(keyOf("a1"), time.Time{}) || !r.has(keyOf("a2"), time.Time{}) {
		t.Error("the record written anew lacks reviews")
	}
}

// Records not written for a window are deleted by the other replicas.
func TestReviewPublisherSweepsStaleRecords(t *testing.T) {
	now := time.Now()
	rec := func(name string, until time.Time) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "slimgate-system", Name: name, Labels: map[string]string{ReviewsLabel: "true"},
			Annotations: map[string]string{annotationSince: now.Add(-time.Hour).Format(time.RFC3339Nano), annotationUntil: until.Format(time.RFC3339Nano)}}}
	}
	c := newFakeClient(t,
		rec(ReviewsPrefix+"stale", now.Add(-11*time.Minute)), rec(ReviewsPrefix+"live", now.Add(-time.Minute)),
		rec(ReviewsPrefix+"me", now.Add(-time.Hour)))
	p := &ReviewPublisher{Log: NewReviewLog(10), Client: c, Reader: c, Namespace: "slimgate-system", Name: ReviewsPrefix + "me"}
	p.defaults()
	p.sweep(context.Background(), now)
	var list corev1.ConfigMapList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range list.Items {
		names = append(names, strings.TrimPrefix(cm.Name, ReviewsPrefix))
	}
	if strings.Join(names, ",") != "live,me" {
		t.Errorf("records left: %v, want live and me", names)
	}
}

func TestHorizon(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, c := range []struct {
		name    string
		records []record
		want    time.Time
	}{
		{"first run: from this replica's start", []record{{since: ago(time.Minute)}}, ago(time.Minute)},
		{"a predecessor's record reaches back", []record{{since: ago(time.Second)}, {since: ago(5 * time.Minute)}}, ago(5 * time.Minute)},
		{"never before the window", []record{{since: ago(time.Second)}, {since: ago(time.Hour)}}, ago(10 * time.Minute)},
		{"a cut record bounds it", []record{{since: ago(time.Second)}, {since: ago(time.Hour)}, {since: ago(2 * time.Minute), truncated: true}}, ago(2 * time.Minute)},
		{"this replica forgot reviews", []record{{since: ago(30 * time.Second), truncated: true}, {since: ago(time.Hour)}}, ago(30 * time.Second)},
	} {
		if got := horizon(now, 10*time.Minute, c.records); !got.Equal(c.want) {
			t.Errorf("%s: horizon %v ago, want %v ago", c.name, now.Sub(got), now.Sub(c.want))
		}
	}
}
