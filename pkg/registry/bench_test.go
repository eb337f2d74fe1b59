package registry

import (
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BenchmarkInspectWarm measures a check served from the caches: no request.
func BenchmarkInspectWarm(b *testing.B) {
	reg := newTestRegistry(b, nil)
	ref := reg.push(b, "app:v1", buildImage(b, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN a", "RUN b", "RUN c"))
	r, _ := newTestRemote(b, Options{})
	req := plainRequest(ref, reg.Host)
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
	benchInspectFresh(b, reg, reg.push(b, "app:v1", buildImage(b, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN a", "RUN b", "RUN c")))
}
