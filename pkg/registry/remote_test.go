package registry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/image"
)

// testRegistry is devcluster's counting registry, stopped with the test.
type testRegistry struct{ *devcluster.CountingRegistry }

func newTestRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	tr := &testRegistry{devcluster.StartCountingRegistry(wrap, 0)}
	t.Cleanup(tr.Close)
	return tr
}

// push writes an image or index, uncounted, and returns its reference.
func (tr *testRegistry) push(t testing.TB, repoTag string, img remote.Taggable, opts ...remote.Option) string {
	t.Helper()
	ref, err := tr.Push(repoTag, img, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// buildImage makes a small image whose history has the given lines.
func buildImage(t testing.TB, p v1.Platform, lines ...string) v1.Image {
	t.Helper()
	img := empty.Image
	for _, l := range lines {
		layer, err := random.Layer(256, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: l}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Config.Env = []string{"PATH=/usr/bin"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func expectedFacts(t testing.TB, img v1.Image, ref string) *image.Facts {
	t.Helper()
	f, err := image.FromImage(img, ref)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newTestRemote(t testing.TB, opts Options) (*Remote, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	r, err := NewRemote(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, reg
}

// plainRequest asks for ref on a loopback plain-HTTP test registry.
func plainRequest(ref string, hosts ...string) Request {
	return Request{Reference: ref, Egress: EgressRules{Insecure: hosts}}
}

// wantReason fails the test unless err is an InspectionError with reason
// want, and returns a copy of it (a value, so a caller that only asserts
// need not keep it).
func wantReason(t *testing.T, err error, want Reason) InspectionError {
	t.Helper()
	ie, ok := AsInspectionError(err)
	if !ok {
		t.Fatalf("want an InspectionError with reason %s, got %v", want, err)
	}
	if ie.Reason != want {
		t.Fatalf("reason = %s, want %s (error: %v)", ie.Reason, want, err)
	}
	return *ie
}

func TestInspectColdThenWarm(t *testing.T) {
	reg := newTestRegistry(t, nil)
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN apt-get install -y gcc", "COPY . /src")
	ref := reg.push(t, "team/app:v1", img)
	r, metrics := newTestRemote(t, Options{MetricHosts: []string{reg.Host}})

	insp, err := r.Inspect(context.Background(), plainRequest(ref, reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	wantFacts := expectedFacts(t, img, ref)
	if len(insp.Images) != 1 {
		t.Fatalf("got %d images, want 1", len(insp.Images))
	}
	if diff := cmp.Diff(wantFacts, insp.Images[0]); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
	if insp.Digest != wantFacts.Digest {
		t.Errorf("digest = %s, want %s", insp.Digest, wantFacts.Digest)
	}
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	got := reg.Counts()
	// A tag seen for the first time is fetched with a GET, without a HEAD.
	if diff := cmp.Diff(map[string]int{"ping": 1, "manifest GET": 1, "blob GET": 1}, got); diff != "" {
		t.Errorf("cold requests (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{cfgDigest.String()}, reg.Blobs()); diff != "" {
		t.Errorf("blobs fetched (-want +got): only the config may be read\n%s", diff)
	}

	reg.Reset()
	again, err := r.Inspect(context.Background(), plainRequest(ref, reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(insp, again); diff != "" {
		t.Errorf("warm inspection differs (-cold +warm):\n%s", diff)
	}
	if got := reg.Counts(); len(got) != 0 {
		t.Errorf("warm check made requests: %v", got)
	}
	want := map[string]float64{
		`slimgate_image_cache_total{result="hit"}`:                                          1,
		`slimgate_image_cache_total{result="miss"}`:                                         1,
		fmt.Sprintf(`slimgate_registry_requests_total{outcome="ok",registry=%q}`, reg.Host): 3,
	}
	if diff := cmp.Diff(want, gatherCounters(t, metrics)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// On a HeadFirst registry (by default Docker Hub, whose pull limits count
// manifest GETs but not HEADs) even a first-seen tag is resolved with a
// HEAD; a second tag naming a digest already cached then costs no GET.
func TestHeadFirstRegistries(t *testing.T) {
	reg := newTestRegistry(t, nil)
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN apt-get install -y gcc")
	first := reg.push(t, "team/app:v1", img)
	second := reg.push(t, "team/app:latest", img)
	r, _ := newTestRemote(t, Options{HeadFirst: []string{reg.Host}})

	if _, err := r.Inspect(context.Background(), plainRequest(first, reg.Host)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"ping": 1, "manifest HEAD": 1, "manifest GET": 1, "blob GET": 1}, reg.Counts()); diff != "" {
		t.Errorf("first tag's requests (-want +got):\n%s", diff)
	}
	reg.Reset()
	if _, err := r.Inspect(context.Background(), plainRequest(second, reg.Host)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"manifest HEAD": 1}, reg.Counts()); diff != "" {
		t.Errorf("second tag, same digest (-want +got):\n%s", diff)
	}

	var o Options
	o.defaults()
	if diff := cmp.Diff([]string{"index.docker.io"}, o.HeadFirst); diff != "" {
		t.Errorf("default HeadFirst (-want +got):\n%s", diff)
	}
}

func TestInspectConcurrentSharesOneFetch(t *testing.T) {
	// Slow manifest reads down so every caller overlaps the one fetch
	// instead of finding it cached.
	slow := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				time.Sleep(50 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	}
	reg := newTestRegistry(t, slow)
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "arm64"}, "RUN true")
	ref := reg.push(t, "app:latest", img)
	r, metrics := newTestRemote(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			_, err := r.Inspect(context.Background(), plainRequest(ref, reg.Host))
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := reg.Counts()
	if got["manifest GET"] != 1 || got["blob GET"] != 1 {
		t.Errorf("requests = %v, want exactly one manifest GET and one config GET", got)
	}
	if misses := gatherCounters(t, metrics)[`slimgate_image_cache_total{result="miss"}`]; misses < 50 {
		t.Errorf("only %v callers missed the cache: the test did not exercise concurrent fetches", misses)
	}
}

func TestInspectMultiPlatformIndex(t *testing.T) {
	reg := newTestRegistry(t, nil)
	amd := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN amd")
	arm := buildImage(t, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "RUN arm")
	win := buildImage(t, v1.Platform{OS: "windows", Architecture: "amd64"}, "RUN win")
	att := buildImage(t, v1.Platform{OS: "unknown", Architecture: "unknown"}, "attestation")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: win, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
	ref := reg.push(t, "multi:1", idx)
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newTestRemote(t, Options{})
	// More linux images than judged per reference is the image's fault,
	// never a cut: the cut one could be what a node pulls.
	capped, _ := newTestRemote(t, Options{MaxPlatforms: 1})
	_, err = capped.Inspect(context.Background(), plainRequest(ref, reg.Host))
	if ie := wantReason(t, err, ReasonTooLarge); !strings.Contains(ie.Error(), "the index has 2 images to judge (every linux platform), more than the 1 allowed") {
		t.Errorf("platform cap: %v", ie)
	}
	entries, _ := newTestRemote(t, Options{MaxIndexEntries: 3})
	_, err = entries.Inspect(context.Background(), plainRequest(ref, reg.Host))
	if ie := wantReason(t, err, ReasonTooLarge); !strings.Contains(ie.Error(), "the index lists 4 entries, more than the 3 allowed") {
		t.Errorf("entry cap: %v", ie)
	}
	for _, tc := range []struct {
		platforms []string
		want      []string
		reason    Reason
	}{
		{platforms: nil, want: []string{"linux/amd64", "linux/arm64/v8"}},
		{platforms: []string{"linux/arm64"}, want: []string{"linux/arm64/v8"}},
		{platforms: []string{"windows/amd64", "linux/amd64"}, want: []string{"windows/amd64", "linux/amd64"}},
		{platforms: []string{"linux/s390x"}, reason: ReasonNotFound},
		{platforms: []string{"linux"}, reason: ReasonBadReference},
	} {
		t.Run(strings.Join(tc.platforms, ","), func(t *testing.T) {
			req := plainRequest(ref, reg.Host)
			req.Platforms = tc.platforms
			insp, err := r.Inspect(context.Background(), req)
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range insp.Images {
				got = append(got, f.Platform.String())
				if f.IndexDigest != idxDigest.String() {
					t.Errorf("%s: index digest = %q, want %s", f.Platform, f.IndexDigest, idxDigest)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInspectNormalisesDockerHub(t *testing.T) {
	r, _ := newTestRemote(t, Options{})
	// The guard refuses Docker Hub here, so no request leaves the machine.
	_, err := r.Inspect(context.Background(), Request{Reference: "nginx", Egress: EgressRules{Enabled: true, AllowRegistries: []string{"ghcr.io"}}})
	ie := wantReason(t, err, ReasonEgressRefused)
	if ie.Reference != "index.docker.io/library/nginx:latest" {
		t.Errorf("reference = %q, want index.docker.io/library/nginx:latest", ie.Reference)
	}
	_, err = r.Inspect(context.Background(), Request{Reference: "Not A Reference!"})
	wantReason(t, err, ReasonBadReference)
}

// basicAuth guards a handler with one user and password.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// pushPrivate pushes an image whose history is line to private/app:v1 on
// a registry that wants alice's password; it returns the registry, the
// reference and the image's digest.
func pushPrivate(t *testing.T, line string) (*testRegistry, string, v1.Hash) {
	t.Helper()
	reg := newTestRegistry(t, basicAuth("alice", "s3cret"))
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, line)
	ref := reg.push(t, "private/app:v1", img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return reg, ref, d
}

func TestCachedFactsNeedTheScopesOwnAccess(t *testing.T) {
	reg, ref, d := pushPrivate(t, "RUN private")
	byDigest := strings.Split(ref, ":v1")[0] + "@" + d.String()
	r, _ := newTestRemote(t, Options{})

	kc := staticKeychain{host: reg.Host, auth: &authn.Basic{Username: "alice", Password: "s3cret"}}
	for _, ref := range []string{ref, byDigest} {
		a := plainRequest(ref, reg.Host)
		a.Keychain, a.CredentialScope = kc, "ns-a/creds"
		if _, err := r.Inspect(context.Background(), a); err != nil {
			t.Fatalf("with credentials: %v", err)
		}
		// Namespace B has no credentials: the cached facts must not leak.
		b := plainRequest(ref, reg.Host)
		b.CredentialScope = "ns-b/none"
		_, err := r.Inspect(context.Background(), b)
		wantReason(t, err, ReasonUnauthorized)
	}
}

// staticKeychain gives one authenticator for one registry host.
type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if res.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

func TestTagTTLAndFailureCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	reg := newTestRegistry(t, nil)
	ref := reg.push(t, "app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
	r, _ := newTestRemote(t, Options{Now: clock, TagTTL: 3 * time.Minute, FailureTTL: 10 * time.Second})
	inspect := func(ref string) error {
		_, err := r.Inspect(context.Background(), plainRequest(ref, reg.Host))
		return err
	}
	if err := inspect(ref); err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	now = now.Add(2 * time.Minute)
	if err := inspect(ref); err != nil {
		t.Fatal(err)
	}
	if got := reg.Counts(); len(got) != 0 {
		t.Errorf("within the tag TTL: requests %v, want none", got)
	}
	now = now.Add(2 * time.Minute)
	if err := inspect(ref); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"manifest HEAD": 1}, reg.Counts()); diff != "" {
		t.Errorf("after the tag TTL: only a HEAD is needed (-want +got):\n%s", diff)
	}

	missing := reg.Host + "/app:missing"
	reg.Reset()
	wantReason(t, inspect(missing), ReasonNotFound)
	first := reg.Counts()["manifest HEAD"]
	now = now.Add(5 * time.Second)
	wantReason(t, inspect(missing), ReasonNotFound)
	if got := reg.Counts()["manifest HEAD"]; got != first {
		t.Errorf("failure not cached: %d HEADs, want %d", got, first)
	}
	now = now.Add(6 * time.Second)
	wantReason(t, inspect(missing), ReasonNotFound)
	if got := reg.Counts()["manifest HEAD"]; got != first+1 {
		t.Errorf("failure cached past its TTL: %d HEADs, want %d", got, first+1)
	}
}

func TestCircuitBreaker(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	r, _ := newTestRemote(t, Options{Now: func() time.Time { return now }, Retries: -1, BreakerThreshold: 3, BreakerCooldown: 30 * time.Second})
	inspect := func(i int) error {
		_, err := r.Inspect(context.Background(), plainRequest(fmt.Sprintf("%s/app:t%d", host, i), host))
		return err
	}
	for i := range 3 {
		wantReason(t, inspect(i), ReasonUnavailable)
	}
	before := hits.Load()
	ie := wantReason(t, inspect(10), ReasonUnavailable)
	if hits.Load() != before || !strings.Contains(ie.Error(), "failed repeatedly") {
		t.Errorf("open breaker still contacted the registry (%d -> %d): %v", before, hits.Load(), ie)
	}
	now = now.Add(31 * time.Second)
	wantReason(t, inspect(11), ReasonUnavailable)
	if hits.Load() == before {
		t.Error("half-open breaker sent no probe")
	}
	after := hits.Load()
	wantReason(t, inspect(12), ReasonUnavailable)
	if hits.Load() != after {
		t.Error("failed probe did not re-open the breaker")
	}
}

// gatherCounters flattens a registry's counters to "name{labels}" -> value.
func gatherCounters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestInspectOCIImage(t *testing.T) {
	reg := newTestRegistry(t, nil)
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN oci")
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	ref := reg.push(t, "oci:v1", img)
	r, _ := newTestRemote(t, Options{})
	insp, err := r.Inspect(context.Background(), plainRequest(ref, reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*image.Facts{expectedFacts(t, img, ref)}, insp.Images); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
}
