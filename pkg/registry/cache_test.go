package registry

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLRUBounds(t *testing.T) {
	now := time.Unix(0, 0)
	c := newLRU[int](3, 100, func() time.Time { return now })
	c.add("a", 1, 10, 0)
	c.add("b", 2, 10, 0)
	c.add("c", 3, 10, 0)
	c.get("a") // a is now the most recent
	c.add("d", 4, 10, 0)
	if _, ok := c.get("b"); ok {
		t.Error("entry bound: b should have been evicted")
	}
	c.add("big", 5, 85, 0)
	if _, ok := c.get("a"); ok || c.len() != 2 {
		t.Errorf("byte bound: %d entries left, want big and d", c.len())
	}
	c.add("huge", 6, 101, 0)
	if _, ok := c.get("huge"); ok {
		t.Error("an entry over the byte budget was stored")
	}
	c.add("ttl", 7, 1, time.Minute)
	now = now.Add(59 * time.Second)
	if _, ok := c.get("ttl"); !ok {
		t.Error("entry expired early")
	}
	now = now.Add(time.Second)
	if _, ok := c.get("ttl"); ok {
		t.Error("entry outlived its TTL")
	}
}

// InspectCached answers only what Inspect would answer without a request,
// for the same credential scope and egress rules, and never contacts the
// registry.
func TestInspectCached(t *testing.T) {
	reg := newTestRegistry(t, nil)
	ref := reg.push(t, "app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN a"))
	r, _ := newTestRemote(t, Options{})
	req := plainRequest(ref, reg.host)
	if _, ok := r.InspectCached(req); ok {
		t.Fatal("answered before anything was fetched")
	}
	if got := reg.log.snapshot(); len(got) != 0 {
		t.Fatalf("InspectCached made requests: %v", got)
	}
	want, err := r.Inspect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	reg.log.reset()
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
	refused.Egress = EgressRules{Enabled: true, Insecure: []string{reg.host}} // loopback refused
	for name, q := range map[string]Request{"another credential scope": other, "egress refused": refused} {
		if _, ok := r.InspectCached(q); ok {
			t.Errorf("%s: answered from the cache", name)
		}
	}
	if got := reg.log.snapshot(); len(got) != 0 {
		t.Errorf("InspectCached made requests: %v", got)
	}
}
