package devcluster

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A pull is counted by kind, with its credentials and blob digests; the
// push before it is not, and Reset forgets what was counted.
func TestCountingRegistry(t *testing.T) {
	const delay = 30 * time.Millisecond
	r := StartCountingRegistry(func(h http.Handler) http.Handler { return BasicAuth(h, "puller", "s3cret", "test") }, delay)
	defer r.Close()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "puller", Password: "s3cret"})
	ref, err := r.Push("team/app:1", img, auth)
	if err != nil {
		t.Fatal(err)
	}
	if ref != r.Host+"/team/app:1" {
		t.Errorf("Push returned %q, want %q", ref, r.Host+"/team/app:1")
	}
	if got := r.Counts(); len(got) != 0 {
		t.Errorf("the push was counted: %v", got)
	}

	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pulled, err := remote.Image(parsed, auth)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pulled.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pulled.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	counts := r.Counts()
	if took, n := time.Since(start), counts["manifest GET"]+counts["blob GET"]; took < time.Duration(n)*delay {
		t.Errorf("%d counted requests answered in %s, want each %s late", n, took, delay)
	}
	if counts["manifest GET"] != 1 || counts["blob GET"] != 1 {
		t.Errorf("counts %v, want one manifest GET and one blob GET", counts)
	}
	if diff := cmp.Diff([]string{cfg.String()}, r.Blobs()); diff != "" {
		t.Errorf("blobs (-want +got):\n%s", diff)
	}
	if got := r.Authorizations(); len(got) == 0 || got[len(got)-1] != "Basic cHVsbGVyOnMzY3JldA==" {
		t.Errorf("authorizations %q, want the puller's basic credentials last", got)
	}

	r.Reset()
	if len(r.Counts()) != 0 || len(r.Blobs()) != 0 || len(r.Authorizations()) != 0 {
		t.Errorf("after Reset: counts %v, blobs %v, authorizations %v, want none", r.Counts(), r.Blobs(), r.Authorizations())
	}
}
