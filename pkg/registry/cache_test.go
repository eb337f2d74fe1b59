package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLRUBounds(t *testing.T) {
	now := time.Unix(0, 0)
	// Values are their own heap size; every key is one byte.
	charge := func(v int64) int64 { return allocSize(1) + v + entryOverhead }
	budget := 3*charge(10) + 5
	c := newLRU(3, budget, func() time.Time { return now }, func(v int64) int64 { return v })
	c.add("a", 10, 0)
	c.add("b", 10, 0)
	c.add("c", 10, 0)
	if c.bytes != 3*charge(10) {
		t.Errorf("3 entries charged %d bytes, want %d", c.bytes, 3*charge(10))
	}
	c.get("a") // a is now the most recent
	c.add("d", 10, 0)
	if _, ok := c.get("b"); ok {
		t.Error("entry bound: b should have been evicted")
	}
	c.add("B", 100, 0)
	if _, ok := c.get("a"); ok || c.len() != 2 {
		t.Errorf("byte bound: %d entries left, want B and d", c.len())
	}
	c.add("H", budget, 0)
	if _, ok := c.get("H"); ok {
		t.Error("an entry over the byte budget was stored")
	}
	c.add("T", 1, time.Minute)
	now = now.Add(59 * time.Second)
	if _, ok := c.get("T"); !ok {
		t.Error("entry expired early")
	}
	now = now.Add(time.Second)
	if _, ok := c.get("T"); ok {
		t.Error("entry outlived its TTL")
	}
}

// heapSize reaches strings, slices to their capacity, maps, pointees and
// interfaces' values.
func TestHeapSize(t *testing.T) {
	type node struct {
		Name string
		Tags []string
		Meta map[string]string
		Next *node
		Err  error
	}
	long := strings.Repeat("x", 1000)
	n := &node{Name: long, Tags: make([]string, 1, 4), Meta: map[string]string{"k": long}, Next: &node{Name: long}, Err: errors.New(long)}
	got := heapSize(n)
	// Four 1000-byte strings, two nodes, a four-slot string array, a map
	// slot and the boxed error: a little over 4000 bytes, under 5000.
	if got < 4000 || got > 5000 {
		t.Errorf("heapSize = %d, want 4000 to 5000", got)
	}
	backing := make([]string, 4)
	backing[3] = long
	if got := heapSize(backing[:1]); got < 1000 {
		t.Errorf("a slice keeps its whole array alive: heapSize = %d, want over 1000", got)
	}
}

// InspectCached answers only what Inspect would answer without a request,
// for the same credential scope and egress rules, and never contacts the
// registry.
func TestInspectCached(t *testing.T) {
	reg := newTestRegistry(t, nil)
	ref := reg.push(t, "app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN a"))
	r, _ := newTestRemote(t, Options{})
	req := plainRequest(ref, reg.Host)
	if _, ok := r.InspectCached(req); ok {
		t.Fatal("answered before anything was fetched")
	}
	if got := reg.Counts(); len(got) != 0 {
		t.Fatalf("InspectCached made requests: %v", got)
	}
	want, err := r.Inspect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	got, ok := r.InspectCached(req)
	if !ok {
		t.Fatal("not answered from the cache after Inspect")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cached answer differs from Inspect's (-want +got):\n%s", diff)
	}
	other := req
	other.CredentialScope = "team/pull-secret"
	refused := req
	refused.Egress = EgressRules{Enabled: true, Insecure: []string{reg.Host}} // loopback refused
	for name, q := range map[string]Request{"another credential scope": other, "egress refused": refused} {
		if _, ok := r.InspectCached(q); ok {
			t.Errorf("%s: answered from the cache", name)
		}
	}
	if got := reg.Counts(); len(got) != 0 {
		t.Errorf("InspectCached made requests: %v", got)
	}
}
