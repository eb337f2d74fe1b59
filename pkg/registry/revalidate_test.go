package registry

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// With Revalidate a tag is asked about again on every call, with one
// manifest HEAD, however recently it was resolved; the facts of a digest
// already cached are reused, and a moved tag is seen at once. Without it
// the tag cache answers, and a digest reference is never re-checked.
func TestRevalidateHeadsTheTagEveryCall(t *testing.T) {
	reg := newTestRegistry(t, nil)
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	slim := buildImage(t, amd64, "COPY app /app")
	ref := reg.push(t, "team/app:T", slim)
	r, _ := newTestRemote(t, Options{})
	req := plainRequest(ref, reg.Host)
	first, err := r.Inspect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}

	fresh := req
	fresh.Revalidate = true
	if _, ok := r.InspectCached(fresh); ok {
		t.Error("InspectCached answered a tag to revalidate from memory")
	}
	if _, ok := r.InspectCached(req); !ok {
		t.Error("InspectCached did not answer the same tag without Revalidate")
	}
	for i := range 3 {
		reg.Reset()
		got, err := r.Inspect(context.Background(), fresh)
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != first.Digest {
			t.Errorf("call %d: digest %s, want %s", i, got.Digest, first.Digest)
		}
		if diff := cmp.Diff(map[string]int{"manifest HEAD": 1}, reg.Counts()); diff != "" {
			t.Errorf("call %d: requests (-want +got):\n%s", i, diff)
		}
	}

	fat := buildImage(t, amd64, "RUN apt-get install -y build-essential", "COPY app /app")
	reg.push(t, "team/app:T", fat)
	fatDigest, err := fat.Digest()
	if err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	cached, err := r.Inspect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if cached.Digest != first.Digest || len(reg.Counts()) != 0 {
		t.Errorf("without Revalidate: digest %s and requests %v, want the cached %s and none", cached.Digest, reg.Counts(), first.Digest)
	}
	moved, err := r.Inspect(context.Background(), fresh)
	if err != nil {
		t.Fatal(err)
	}
	if moved.Digest != fatDigest.String() {
		t.Errorf("with Revalidate after the move: digest %s, want %s", moved.Digest, fatDigest)
	}

	// A digest reference cannot move: Revalidate leaves its cache alone.
	pinned := plainRequest(reg.Host+"/team/app@"+fatDigest.String(), reg.Host)
	if _, err := r.Inspect(context.Background(), pinned); err != nil {
		t.Fatal(err)
	}
	pinned.Revalidate = true
	reg.Reset()
	if _, ok := r.InspectCached(pinned); !ok {
		t.Error("InspectCached did not answer a digest reference with Revalidate")
	}
	if got := reg.Counts(); len(got) != 0 {
		t.Errorf("a cached digest reference made requests: %v", got)
	}
}
