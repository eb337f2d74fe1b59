package registry

import (
	"context"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BenchmarkInspectWarm measures a check served from the caches: no request.
func BenchmarkInspectWarm(b *testing.B) {
	reg := newTestRegistry(b, nil)
	ref := reg.push(b, "app:v1", buildImage(b, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN a", "RUN b", "RUN c"))
	r, _ := newTestRemote(b, Options{})
	req := plainRequest(ref, reg.host)
	if _, err := r.Inspect(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Inspect(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInspectCold measures a check with empty caches against the
// in-process registry: ping, manifest GET, config blob.
func BenchmarkInspectCold(b *testing.B) {
	reg := newTestRegistry(b, nil)
	ref := reg.push(b, "app:v1", buildImage(b, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN a", "RUN b", "RUN c"))
	req := plainRequest(ref, reg.host)
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewRemote(Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Inspect(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

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
