package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/internal/devcluster"
)

// Shared state that one request, or one registry, could poison for every
// other caller: the circuit breaker, the facts cache, the metrics and the
// memory the caches hold. Each test measures the resource at stake.

// breakerOf returns host's breaker state: whether it is open, and the
// failures counted in its current run.
func breakerOf(r *Remote, host string) (open bool, failures int) {
	r.breaker.mu.Lock()
	defer r.breaker.mu.Unlock()
	s := r.breaker.hosts[host]
	if s == nil {
		return false, 0
	}
	return !s.openUntil.IsZero(), s.failures
}

// delayManifests holds manifest requests back for the duration in delay
// (read per request), or until the client goes away.
func delayManifests(delay *atomic.Int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := time.Duration(delay.Load()); d > 0 && strings.Contains(r.URL.Path, "/manifests/") {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-t.C:
				case <-r.Context().Done():
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
}

func inspectWithin(r *Remote, d time.Duration, req Request) (*Inspection, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.Inspect(ctx, req)
}

// pushTags pushes img under n tags of one repository.
func pushTags(t *testing.T, reg *testRegistry, n int, img v1.Image) []string {
	t.Helper()
	var refs []string
	for i := range n {
		refs = append(refs, reg.push(t, fmt.Sprintf("app:t%d", i), img))
	}
	return refs
}

// A review with a tiny budget (or 40 of them) against a registry that is
// merely slower than that budget says nothing about the registry: its
// breaker stays closed and the next caller with time to wait is served.
func TestBreakerIgnoresCallerDeadlines(t *testing.T) {
	var delay atomic.Int64
	reg := newTestRegistry(t, delayManifests(&delay))
	refs := pushTags(t, reg, 40, buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
	delay.Store(int64(300 * time.Millisecond))
	r, _ := newTestRemote(t, Options{})

	var wg sync.WaitGroup
	for _, ref := range refs {
		wg.Go(func() {
			_, err := inspectWithin(r, 30*time.Millisecond, plainRequest(ref, reg.Host))
			if ie, ok := AsInspectionError(err); !ok || ie.Reason != ReasonTimeout {
				t.Errorf("%s with a 30ms budget: %v, want a timeout", ref, err)
			}
		})
	}
	wg.Wait()
	if open, n := breakerOf(r, reg.Host); open || n != 0 {
		t.Errorf("after 40 callers' deadlines the breaker of a healthy registry is open=%v with %d failures counted", open, n)
	}
	delay.Store(0)
	reg.Reset()
	if _, err := inspectWithin(r, 5*time.Second, plainRequest(refs[0], reg.Host)); err != nil {
		t.Fatalf("a caller with time to wait: %v", err)
	}
	if got := reg.Counts(); got["manifest HEAD"]+got["manifest GET"] == 0 {
		t.Errorf("the follow-up did not reach the registry: %v", got)
	}
}

// Negative control: the registry's own slowness, as our transport's
// response-header timeout measures it, does count.
func TestBreakerCountsTheRegistrysOwnTimeouts(t *testing.T) {
	var delay atomic.Int64
	reg := newTestRegistry(t, delayManifests(&delay))
	refs := pushTags(t, reg, 4, buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
	delay.Store(int64(time.Hour))
	r, _ := newTestRemote(t, Options{ResponseHeaderTimeout: 100 * time.Millisecond, Retries: -1, BreakerThreshold: 3})
	for _, ref := range refs[:3] {
		_, err := inspectWithin(r, 5*time.Second, plainRequest(ref, reg.Host))
		wantReason(t, err, ReasonTimeout)
	}
	if open, _ := breakerOf(r, reg.Host); !open {
		t.Fatal("three response-header timeouts of our own transport did not open the breaker")
	}
	before := reg.Counts()["manifest GET"]
	_, err := inspectWithin(r, 5*time.Second, plainRequest(refs[3], reg.Host))
	if ie := wantReason(t, err, ReasonUnavailable); !strings.Contains(ie.Error(), "failed repeatedly") || reg.Counts()["manifest GET"] != before {
		t.Errorf("open breaker: %v, manifest GETs %d -> %d", ie, before, reg.Counts()["manifest GET"])
	}
}

// The half-open probe belongs to whoever calls first after the cooldown;
// when that caller's own deadline cuts it short, the probe proved nothing
// and the next caller probes again.
func TestBreakerProbeCutShortByItsCaller(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var delay atomic.Int64
	reg := newTestRegistry(t, delayManifests(&delay))
	refs := pushTags(t, reg, 4, buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
	delay.Store(int64(time.Hour))
	r, _ := newTestRemote(t, Options{Now: clock, ResponseHeaderTimeout: 100 * time.Millisecond, Retries: -1, BreakerThreshold: 2, BreakerCooldown: 30 * time.Second})
	for _, ref := range refs[:2] {
		_, err := inspectWithin(r, 5*time.Second, plainRequest(ref, reg.Host))
		wantReason(t, err, ReasonTimeout)
	}
	if open, _ := breakerOf(r, reg.Host); !open {
		t.Fatal("the breaker did not open")
	}
	delay.Store(int64(300 * time.Millisecond)) // healthy, but slower than the probe's caller
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	_, err := inspectWithin(r, 30*time.Millisecond, plainRequest(refs[2], reg.Host))
	wantReason(t, err, ReasonTimeout)
	// The probe's fetch ends just after its caller gave up; until then
	// the probe is in flight and others are refused.
	for range 200 {
		r.breaker.mu.Lock()
		s := r.breaker.hosts[reg.Host]
		probing := s != nil && s.probing
		r.breaker.mu.Unlock()
		if !probing {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	delay.Store(0)
	if _, err := inspectWithin(r, 5*time.Second, plainRequest(refs[3], reg.Host)); err != nil {
		t.Fatalf("after a probe cut short by its caller: %v", err)
	}
	if open, n := breakerOf(r, reg.Host); open || n != 0 {
		t.Errorf("after a successful probe the breaker is open=%v with %d failures", open, n)
	}
}

// Callers of one reference share one fetch; the first caller's deadline
// must not become the answer of a caller with time left.
func TestSharedFetchOutlivesItsLeadersDeadline(t *testing.T) {
	var delay atomic.Int64
	reg := newTestRegistry(t, delayManifests(&delay))
	ref := reg.push(t, "app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
	delay.Store(int64(200 * time.Millisecond))
	r, _ := newTestRemote(t, Options{})
	leader := make(chan error, 1)
	go func() {
		_, err := inspectWithin(r, 50*time.Millisecond, plainRequest(ref, reg.Host))
		leader <- err
	}()
	for reg.Counts()["manifest GET"] == 0 { // the leader's fetch is under way
		time.Sleep(time.Millisecond)
	}
	if _, err := inspectWithin(r, 5*time.Second, plainRequest(ref, reg.Host)); err != nil {
		t.Errorf("a caller with 5s left got the answer of a caller with 50ms: %v", err)
	}
	wantReason(t, <-leader, ReasonTimeout)
}

// A manifest digest names content, not access: facts fetched from one
// registry's private repository are never the answer for the same digest
// on another registry, whatever that registry says about it.
func TestCachedFactsStayWithTheirRepository(t *testing.T) {
	private, ref, d := pushPrivate(t, "RUN echo private build step")
	other := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`)
	attackers := map[string]func(w http.ResponseWriter, r *http.Request){
		"HEAD claims the digest, GET has nothing": func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead {
				w.Header().Set("Docker-Content-Digest", d.String())
				w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
				return
			}
			http.NotFound(w, r)
		},
		"HEAD without a digest, GET has nothing": func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead {
				w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
				return
			}
			http.NotFound(w, r)
		},
		"HEAD claims the digest, GET serves other content": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Docker-Content-Digest", d.String())
			w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
			if r.Method == http.MethodGet {
				w.Write(other)
			}
		},
	}
	hosts := map[string]string{}
	var headFirst []string
	for name, h := range attackers {
		host, _ := hostileServer(t, h)
		hosts[name] = host
		headFirst = append(headFirst, host)
	}
	r, _ := newTestRemote(t, Options{HeadFirst: headFirst})
	owner := plainRequest(ref, private.Host)
	owner.Keychain, owner.CredentialScope = staticKeychain{host: private.Host, auth: &authn.Basic{Username: "alice", Password: "s3cret"}}, "ns-a/creds"
	if _, err := r.Inspect(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	for name, host := range hosts {
		for _, ref := range []string{host + "/x@" + d.String(), host + "/x:v1"} {
			t.Run(name+"/"+ref[len(host):], func(t *testing.T) {
				insp, err := inspectWithin(r, 5*time.Second, plainRequest(ref, host))
				if err == nil {
					t.Fatalf("answered with the facts of %s (history %q)", insp.Images[0].Digest, insp.Images[0].History[0].CreatedBy)
				}
				if ie, ok := AsInspectionError(err); !ok || (ie.Reason != ReasonNotFound && ie.Reason != ReasonInvalid) {
					t.Errorf("err = %v, want not found or invalid", err)
				}
			})
		}
	}
}

// A digest reference is confirmed by the registry each time a scope first
// asks for it: a HEAD that names the digest, or the body's hash. A HEAD
// without Docker-Content-Digest confirms nothing.
func TestDigestConfirmationNeedsTheDigest(t *testing.T) {
	var noHeader, junk atomic.Bool
	reg := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				h.ServeHTTP(w, r)
				return
			}
			switch {
			case junk.Load():
				w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
				if r.Method == http.MethodGet {
					w.Write([]byte(`{"schemaVersion":2,"config":{}}`))
				}
			case noHeader.Load() && r.Method == http.MethodHead:
				w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
			default:
				h.ServeHTTP(w, r)
			}
		})
	})
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x")
	tagged := reg.push(t, "app:v1", img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimSuffix(tagged, ":v1") + "@" + d.String()
	r, _ := newTestRemote(t, Options{})
	inScope := func(scope string) error {
		req := plainRequest(ref, reg.Host)
		req.CredentialScope = scope
		_, err := inspectWithin(r, 5*time.Second, req)
		return err
	}
	if err := inScope("a"); err != nil {
		t.Fatal(err)
	}
	noHeader.Store(true)
	reg.Reset()
	if err := inScope("b"); err != nil {
		t.Fatalf("a registry that sends no digest on HEAD: %v", err)
	}
	if got := reg.Counts()["manifest GET"]; got != 1 {
		t.Errorf("HEAD without a digest: %d manifest GETs, want 1 (the body's hash confirms the digest)", got)
	}
	junk.Store(true)
	wantReason(t, inScope("c"), ReasonInvalid)
}

// The registry label of the requests metric takes no value an attacker
// chooses: a thousand hosts named in image references are one series.
func TestRegistryLabelsAreBounded(t *testing.T) {
	r, metrics := newTestRemote(t, Options{Retries: -1})
	for i := range 1000 {
		host := fmt.Sprintf("127.0.%d.%d:1", i/250, i%250+1) // connection refused at once
		_, err := inspectWithin(r, 5*time.Second, plainRequest(host+"/app:v1", host))
		if err == nil {
			t.Fatalf("%s answered", host)
		}
	}
	values, err := devcluster.LabelValues(metrics, "slimgate_registry_requests_total", "registry")
	if err != nil {
		t.Fatal(err)
	}
	if len(values) > len(wellKnownRegistries)+1 {
		t.Errorf("1000 attacker hosts made %d registry label values, want at most %d", len(values), len(wellKnownRegistries)+1)
	}
}

// An image reference of a mebibyte is refused before anything is parsed,
// cached or fetched, and refusing it costs no copy of it.
func TestLongReferencesAreRefused(t *testing.T) {
	r, _ := newTestRemote(t, Options{})
	long := "127.0.0.1:1/" + strings.Repeat("a", 1<<20) + ":v1"
	const attempts = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range attempts {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		_, err := r.Inspect(ctx, plainRequest(long, "127.0.0.1:1"))
		cancel()
		ie := wantReason(t, err, ReasonBadReference)
		if !strings.Contains(ie.Error(), "longer than the 4096 bytes allowed") || len(ie.Error()) > 512 {
			t.Fatalf("error (%d bytes) does not say the reference is too long: %.300s", len(ie.Error()), ie.Error())
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("refusing took %s, past the deadline", time.Since(start))
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / attempts; per > 16<<10 {
		t.Errorf("each refusal allocated %d bytes, want no copy of the 1 MiB reference", per)
	}
	if n := r.seen.len() + r.failures.len() + r.resolved.len(); n != 0 {
		t.Errorf("%d cache entries after refusals, want none", n)
	}
	// The longest reference a registry can serve (a 255-byte repository,
	// a 128-byte tag) is inspected as any other.
	longest := "127.0.0.1:1/" + strings.Repeat("a", 255) + ":" + strings.Repeat("t", 128)
	_, err := inspectWithin(r, 2*time.Second, plainRequest(longest, "127.0.0.1:1"))
	if ie, ok := AsInspectionError(err); !ok || ie.Reason == ReasonBadReference {
		t.Errorf("the longest valid reference: %v, want it inspected", err)
	}
}

// tinyEntriesConfig is a config at every cap with the smallest entries
// JSON allows: the shape whose parsed form outweighs its bytes most.
func tinyEntriesConfig(i, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"architecture":"amd64","os":"linux","config":{"Env":[`)
	for j := range n {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`""`)
	}
	b.WriteString(`],"Labels":{`)
	for j := range n {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d":""`, j)
	}
	fmt.Fprintf(&b, `},"User":"%d"},"history":[`, i)
	for j := range n {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// fatIndex is an index of 64 entries, each with 8 KiB of annotations.
func fatIndex(i int) []byte {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for j := range 64 {
		idx.Manifests = append(idx.Manifests, v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Size: 500, Digest: hashOf(fmt.Appendf(nil, "%d %d", i, j)),
			Platform:    &v1.Platform{OS: "linux", Architecture: "amd64"},
			Annotations: map[string]string{"note": strings.Repeat("x", 8<<10)},
		})
	}
	b, _ := json.Marshal(&idx)
	return b
}

// The facts cache charges what its entries hold: its accounted bytes stay
// within a factor of two of the heap they take, for ordinary images and
// for the shapes that outweigh their JSON most.
func TestCacheChargesRealBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		add  func(tb testing.TB, f *memoryFiller, i int)
	}{
		{"fixture images", 2000, func(tb testing.TB, f *memoryFiller, i int) { f.add(tb, i) }},
		{"tiny history, env and label entries at the caps", 200, func(tb testing.TB, f *memoryFiller, i int) {
			f.addManifest(tb, v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2}, tinyEntriesConfig(i, 1000))
		}},
		{"indexes with fat annotations", 40, func(tb testing.TB, f *memoryFiller, i int) {
			body := fatIndex(i)
			if _, err := f.s.document(context.Background(), hashOf(body), body, types.OCIImageIndex); err != nil {
				tb.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRemote(Options{CacheEntries: 1 << 20, CacheBytes: 4 << 30})
			if err != nil {
				t.Fatal(err)
			}
			f := newMemoryFiller(t, r)
			before := devcluster.HeapAfterGC()
			for i := range tc.n {
				tc.add(t, f, i)
			}
			heap := float64(devcluster.HeapAfterGC() - before)
			if r.docs.len() != tc.n {
				t.Fatalf("%d documents cached, want %d", r.docs.len(), tc.n)
			}
			ratio := float64(r.docs.bytes) / heap
			t.Logf("FIGURE cache accounting (%s): %d documents, heap %.1f MiB, accounted %.1f MiB, ratio %.2f",
				tc.name, tc.n, heap/(1<<20), float64(r.docs.bytes)/(1<<20), ratio)
			if ratio < 0.5 || ratio > 2 {
				t.Errorf("the cache accounts %.2f of the heap its entries take, want 0.5 to 2", ratio)
			}
			runtime.KeepAlive(f)
		})
	}
}

// Every cache of a Remote (facts, resolved references, references seen,
// failures, transports) charges what it holds: after inspections of many
// repositories with long names, some missing, the bytes they account stay
// within a factor of two of the heap the Remote took.
func TestRemoteCachesChargeRealBytes(t *testing.T) {
	image := serveConfig(tinyEntriesConfig(0, 100))
	host, _ := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/missing") {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
			return
		}
		image(w, r)
	})
	const n = 300
	before := devcluster.HeapAfterGC()
	r, err := NewRemote(Options{CacheEntries: 1 << 20, CacheBytes: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pad := strings.Repeat("r", 200)
	for i := range n {
		for _, repo := range []string{"ok", "missing"} {
			req := plainRequest(fmt.Sprintf("%s/%s%d/%s:v1", host, repo, i, pad), host)
			req.CredentialScope = fmt.Sprintf("namespace-%d/%s", i, pad)
			_, err := inspectWithin(r, 5*time.Second, req)
			if (err != nil) != (repo == "missing") {
				t.Fatalf("%s: %v", req.Reference, err)
			}
		}
	}
	heap := float64(devcluster.HeapAfterGC() - before)
	accounted := map[string]int64{"facts": r.docs.bytes, "resolved": r.resolved.bytes, "seen": r.seen.bytes, "failures": r.failures.bytes, "transports": r.auth.bytes}
	var total int64
	for _, b := range accounted {
		total += b
	}
	ratio := float64(total) / heap
	t.Logf("FIGURE remote caches: %d inspections: heap %.1f MiB, accounted %.1f MiB (%v), ratio %.2f", 2*n, heap/(1<<20), float64(total)/(1<<20), accounted, ratio)
	if r.failures.len() != n || r.auth.len() != 2*n {
		t.Fatalf("%d failures and %d transports cached, want %d and %d", r.failures.len(), r.auth.len(), n, 2*n)
	}
	if ratio < 0.5 || ratio > 2 {
		t.Errorf("the caches account %.2f of the heap the Remote took, want 0.5 to 2", ratio)
	}
	runtime.KeepAlive(r)
}
