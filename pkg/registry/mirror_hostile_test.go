package registry

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Mirrors that misbehave: that are sent the wrong credentials, serve other
// content for a digest, or hold half an index.

// hostKeychain holds one authenticator per registry host.
type hostKeychain map[string]authn.Authenticator

func (k hostKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[res.RegistryStr()]; ok {
		return a, nil
	}
	return authn.Anonymous, nil
}

// A mirror is sent the credentials the keychain holds for the mirror's
// own host, never those of the upstream registry the workload names.
func TestMirrorGetsItsOwnCredentials(t *testing.T) {
	upstream := newTestRegistry(t, basicAuth("bob", "upstream-pass"))
	mirror := newTestRegistry(t, basicAuth("alice", "mirror-pass"))
	img := linuxImage(t, "COPY app /app")
	ref := upstream.push(t, "team/app:v1", img, remote.WithAuth(&authn.Basic{Username: "bob", Password: "upstream-pass"}))
	mirror.push(t, "team/app:v1", img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "mirror-pass"}))
	table := mirrorTable(t, `%s: {endpoints: ["http://%s"], fallback: false}`, upstream.Host, mirror.Host)
	bob := &authn.Basic{Username: "bob", Password: "upstream-pass"}
	bobHeader := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:upstream-pass"))

	r, _ := newTestRemote(t, Options{Mirrors: table})
	req := plainRequest(ref, upstream.Host, mirror.Host)
	req.Keychain = hostKeychain{upstream.Host: bob, mirror.Host: &authn.Basic{Username: "alice", Password: "mirror-pass"}}
	req.CredentialScope = "ns/both"
	insp, err := inspectWithin(r, 10*time.Second, req)
	if err != nil {
		t.Fatal(err)
	}
	judged(t, insp, img, ref)

	// Only the upstream's credentials: the mirror refuses, and never
	// sees them.
	req.Keychain, req.CredentialScope = hostKeychain{upstream.Host: bob}, "ns/upstream-only"
	_, err = inspectWithin(r, 10*time.Second, req)
	wantReason(t, err, ReasonUnauthorized)
	seen := mirror.Authorizations()
	if len(seen) == 0 {
		t.Fatal("the mirror saw no credentials at all")
	}
	for _, a := range seen {
		if a == bobHeader {
			t.Errorf("the mirror was sent the upstream's credentials")
		}
	}
	if n := upstream.requests(); n != 0 {
		t.Errorf("the upstream got %d requests with fallback off", n)
	}
}

// A mirror cannot substitute content for a digest reference: a manifest
// that does not hash to the digest is refused as invalid, and the search
// ends there rather than judging the upstream's copy.
func TestMirrorCannotSubstituteADigest(t *testing.T) {
	upstream := newTestRegistry(t, nil)
	fat, slim := linuxImage(t, "RUN apt-get install -y gcc"), linuxImage(t, "COPY app /app")
	ref := upstream.push(t, "team/app:v1", fat)
	// The liar answers every manifest request with its tag, the slim image.
	liar := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if before, _, ok := strings.Cut(r.URL.Path, "/manifests/sha256:"); ok && r.Method != http.MethodPut {
				r.URL.Path = before + "/manifests/v1"
			}
			h.ServeHTTP(w, r)
		})
	})
	liar.push(t, "team/app:v1", slim)
	r, _ := newTestRemote(t, Options{Mirrors: mirrorTable(t, `%s: {endpoints: ["http://%s"], fallback: true}`, upstream.Host, liar.Host)})
	byDigest := strings.TrimSuffix(ref, ":v1") + "@" + expectedFacts(t, fat, ref).Digest
	_, err := inspectWithin(r, 10*time.Second, plainRequest(byDigest, upstream.Host, liar.Host))
	wantReason(t, err, ReasonInvalid)
	if n := upstream.requests(); n != 0 {
		t.Errorf("the upstream got %d requests after the mirror served other content", n)
	}
}

// A mirror that has an index but not a manifest it names is a mirror that
// lacks the image, not an invalid image: the upstream serves it.
func TestMirrorLackingAnIndexEntryPassesTheTurn(t *testing.T) {
	upstream := newTestRegistry(t, nil)
	amd := linuxImage(t, "COPY app /app")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	ref := upstream.push(t, "multi:1", idx)
	partial := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256:") {
				http.NotFound(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	partial.push(t, "multi:1", idx)
	r, _ := newTestRemote(t, Options{Mirrors: mirrorTable(t, `%s: {endpoints: ["http://%s"]}`, upstream.Host, partial.Host)})
	insp, err := inspectWithin(r, 10*time.Second, plainRequest(ref, upstream.Host, partial.Host))
	if err != nil {
		t.Fatal(err)
	}
	if len(insp.Images) != 1 || upstream.requests() == 0 {
		t.Errorf("%d images judged, %d upstream requests; want the upstream's one image", len(insp.Images), upstream.requests())
	}
}
