package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/internal/devcluster"
)

// Benchmarks and measurements of docs/benchmarks.md for the registry
// client: cold fetches against a bare go-containerregistry fetch, and the
// facts cache at 100,000 images.

// scaleFixtures are real configs (pkg/policy/testdata/images) with 8 to 25
// history entries, the shape of the images a cluster runs.
var scaleFixtures = []string{
	"nginx-1.17.0.json", "httpd-2.4.23.json", "tomcat-8.5.77-jre11-app.json",
	"golang-1.24.4-bookworm.json", "opm-catalog-distroless-s390x.json", "k8s-debug-bridge-alpine-multistage.json",
}

// fixtureConfig reads a fixture's config and the number of layers its
// history adds.
func fixtureConfig(tb testing.TB, file string) (*v1.ConfigFile, int) {
	tb.Helper()
	cfg, err := devcluster.ReadFixtureConfig("../policy/testdata/images/" + file)
	if err != nil {
		tb.Fatal(err)
	}
	layers := 0
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			layers++
		}
	}
	return cfg, layers
}

// appImage is an image with the config of a Tomcat application fixture
// and one small random layer per layer its history adds.
func appImage(tb testing.TB) v1.Image {
	tb.Helper()
	cfg, _ := fixtureConfig(tb, "tomcat-8.5.77-jre11-app.json")
	img, err := devcluster.ImageFromConfig(cfg, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// freshTransport is a new transport with slimgate's connection settings,
// so that a bare fetch opens its connections as a new Remote does.
func freshTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 3 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
	}
}

// bareFetch is the baseline: go-containerregistry's remote.Image, then the
// manifest and the config file, nothing else.
func bareFetch(ref name.Reference, tr http.RoundTripper) error {
	img, err := remote.Image(ref, remote.WithTransport(tr))
	if err != nil {
		return err
	}
	if _, err := img.Manifest(); err != nil {
		return err
	}
	_, err = img.ConfigFile()
	return err
}

// requestsPerOp reports the registry requests one iteration made.
func requestsPerOp(b *testing.B, reg *testRegistry, iterations int) {
	total := 0
	for _, n := range reg.Counts() {
		total += n
	}
	if iterations > 0 {
		b.ReportMetric(float64(total)/float64(iterations), "requests/op")
	}
}

// BenchmarkColdBare fetches one image's manifest and config with a bare
// go-containerregistry remote.Image on a fresh transport each iteration:
// the floor for BenchmarkInspectColdFixture.
func BenchmarkColdBare(b *testing.B) { benchBareFetch(b, false) }

// BenchmarkInspectColdFixture inspects the same image as BenchmarkColdBare
// with a new Remote (empty caches, fresh connections) each iteration.
func BenchmarkInspectColdFixture(b *testing.B) {
	reg := newTestRegistry(b, nil)
	benchInspectFresh(b, reg, reg.push(b, "shop/web:1.0", appImage(b)))
}

// benchInspectFresh inspects ref with a new Remote (empty caches, fresh
// connections) each iteration.
func benchInspectFresh(b *testing.B, reg *testRegistry, ref string) {
	req := plainRequest(ref, reg.Host)
	reg.Reset()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r, err := NewRemote(Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Inspect(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		r.Close()
		n++
	}
	requestsPerOp(b, reg, n)
}

// BenchmarkColdBareKeepAlive is the bare fetch on one long-lived transport:
// connections are reused, but remote.Image still pings every time.
func BenchmarkColdBareKeepAlive(b *testing.B) { benchBareFetch(b, true) }

// benchBareFetch fetches the fixture image with a bare remote.Image each
// iteration, on one long-lived transport (keepAlive) or a fresh one.
func benchBareFetch(b *testing.B, keepAlive bool) {
	reg := newTestRegistry(b, nil)
	ref, err := name.ParseReference(reg.push(b, "shop/web:1.0", appImage(b)), name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	kept := freshTransport()
	defer kept.CloseIdleConnections()
	reg.Reset()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		tr := kept
		if !keepAlive {
			tr = freshTransport()
		}
		if err := bareFetch(ref, tr); err != nil {
			b.Fatal(err)
		}
		if !keepAlive {
			tr.CloseIdleConnections()
		}
		n++
	}
	requestsPerOp(b, reg, n)
}

// BenchmarkInspectColdLongLived is the cold path as the webhook meets it:
// a long-lived Remote (connections and registry token kept) asked for an
// image whose facts are not cached. Two images alternate through a
// one-entry cache, so every inspection fetches manifest and config.
func BenchmarkInspectColdLongLived(b *testing.B) {
	reg := newTestRegistry(b, nil)
	refs := []string{
		reg.push(b, "shop/web:1.0", appImage(b)),
		reg.push(b, "shop/web:1.1", appImage(b)),
	}
	r, _ := newTestRemote(b, Options{CacheEntries: 1})
	if _, err := r.Inspect(context.Background(), plainRequest(refs[1], reg.Host)); err != nil {
		b.Fatal(err)
	}
	reg.Reset()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := r.Inspect(context.Background(), plainRequest(refs[n%2], reg.Host)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if blobs := reg.Counts()["blob GET"]; blobs != n {
		b.Fatalf("%d config fetches for %d inspections: the cache served some", blobs, n)
	}
	requestsPerOp(b, reg, n)
}

// TestColdRatio runs the cold benchmarks against their bare floors in
// turn, five rounds, and checks the median ratio against the target
// (slimgate at most 1.2 times the bare fetch). A measurement, run by
// `make bench` (SLIMGATE_BENCH=1), not by `go test`.
func TestColdRatio(t *testing.T) {
	if os.Getenv("SLIMGATE_BENCH") == "" {
		t.Skip("a measurement: set SLIMGATE_BENCH=1 (make bench runs it)")
	}
	const rounds, target = 5, 1.2
	pairs := []struct {
		name       string
		floor, got func(*testing.B)
	}{
		{"fresh connections", BenchmarkColdBare, BenchmarkInspectColdFixture},
		{"kept connections", BenchmarkColdBareKeepAlive, BenchmarkInspectColdLongLived},
	}
	for _, p := range pairs {
		var ratios []float64
		var floor, got testing.BenchmarkResult
		for range rounds {
			floor, got = testing.Benchmark(p.floor), testing.Benchmark(p.got)
			if floor.N == 0 || got.N == 0 {
				t.Fatal("a benchmark failed; run it with go test -bench to see why")
			}
			ratios = append(ratios, float64(got.NsPerOp())/float64(floor.NsPerOp()))
		}
		slices.Sort(ratios)
		median := ratios[len(ratios)/2]
		t.Logf("FIGURE cold (%s): slimgate %d ns/op %.0f requests/op %d allocs/op; bare ggcr %d ns/op %.0f requests/op %d allocs/op; ratio median %.2f (min %.2f, max %.2f; target <= %.1f)",
			p.name, got.NsPerOp(), got.Extra["requests/op"], got.AllocsPerOp(), floor.NsPerOp(), floor.Extra["requests/op"], floor.AllocsPerOp(),
			median, ratios[0], ratios[len(ratios)-1], target)
		if p.name == "fresh connections" && median > target {
			t.Errorf("a cold inspection is %.2fx the bare fetch, over the %.1fx target", median, target)
		}
	}
}

// memoryFiller puts facts into a Remote's cache through the code that
// caches them in production (session.document: parse, caps, accounting),
// serving config blobs from memory instead of a registry.
type memoryFiller struct {
	r       *Remote
	s       *session
	configs map[string][]byte
	cfgs    []*v1.ConfigFile
	layers  []int
}

func newMemoryFiller(tb testing.TB, r *Remote) *memoryFiller {
	tb.Helper()
	f := &memoryFiller{r: r, configs: map[string][]byte{}}
	for _, file := range scaleFixtures {
		cfg, layers := fixtureConfig(tb, file)
		f.cfgs = append(f.cfgs, cfg)
		f.layers = append(f.layers, layers)
	}
	f.s = &session{r: r, host: "registry.example", repo: "registry.example/app", base: "https://registry.example/v2/app",
		client: &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			d := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
			body, ok := f.configs[d]
			if !ok {
				return &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody, Request: req}, nil
			}
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
		})}}
	return f
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// add caches the facts of a distinct image i: fixture i mod 6 with its own
// env entry, label and layer digests.
func (f *memoryFiller) add(tb testing.TB, i int) {
	k := i % len(f.cfgs)
	cfg := *f.cfgs[k]
	cfg.Config.Env = append(slices.Clip(cfg.Config.Env), fmt.Sprintf("BUILD_ID=%d", i))
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.revision": fmt.Sprintf("%040x", i)}
	for l, v := range f.cfgs[k].Config.Labels {
		cfg.Config.Labels[l] = v
	}
	cfg.RootFS = v1.RootFS{Type: "layers"}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2}
	for l := range f.layers[k] {
		diff := hashOf(fmt.Appendf(nil, "diff %d %d", i, l))
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diff)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: int64(1<<20 + 4096*l), Digest: hashOf(fmt.Appendf(nil, "layer %d %d", i, l))})
	}
	raw, err := json.Marshal(&cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.addManifest(tb, m, raw)
}

// addManifest caches the document of manifest m whose config is raw.
func (f *memoryFiller) addManifest(tb testing.TB, m v1.Manifest, raw []byte) {
	m.Config = configDescriptor(raw)
	body, err := json.Marshal(&m)
	if err != nil {
		tb.Fatal(err)
	}
	f.configs[m.Config.Digest.String()] = raw
	if _, err := f.s.document(context.Background(), hashOf(body), body, types.DockerManifestSchema2); err != nil {
		tb.Fatal(err)
	}
	delete(f.configs, m.Config.Digest.String())
}

// TestCacheScale measures the facts cache: heap per cached image and in
// total with 100,000 distinct images cached (a cache configured to hold
// them), and checks that the default bounds (entries and bytes) hold when
// 20,000 images pass through a default cache, and a byte bound when it is
// the tighter one. A measurement, run by `make bench` (SLIMGATE_BENCH=1).
func TestCacheScale(t *testing.T) {
	if os.Getenv("SLIMGATE_BENCH") == "" {
		t.Skip("a measurement: set SLIMGATE_BENCH=1 (make bench runs it)")
	}
	const images = 100_000

	// Everything held: memory per image.
	before := devcluster.HeapAfterGC()
	r, err := NewRemote(Options{CacheEntries: images, CacheBytes: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	f := newMemoryFiller(t, r)
	for i := range images {
		f.add(t, i)
	}
	after := devcluster.HeapAfterGC()
	if got := r.docs.len(); got != images {
		t.Fatalf("%d entries cached, want %d", got, images)
	}
	heap := after - before
	accounted := r.docs.bytes
	t.Logf("FIGURE cache scale: %d distinct images cached: heap %.1f MiB, %d bytes per image; the cache accounts %d bytes per image (%.2f of the heap)",
		images, float64(heap)/(1<<20), heap/images, accounted/images, float64(accounted)/float64(heap))
	runtime.KeepAlive(r)

	// Default bounds: 4096 entries, 64 MiB.
	r = nil
	f = nil
	before = devcluster.HeapAfterGC()
	def, err := NewRemote(Options{})
	if err != nil {
		t.Fatal(err)
	}
	f = newMemoryFiller(t, def)
	const passing = 20_000 // five times the entry bound
	for i := range passing {
		f.add(t, i)
	}
	after = devcluster.HeapAfterGC()
	o := def.opts
	if n, b := def.docs.len(), def.docs.bytes; n > o.CacheEntries || b > o.CacheBytes {
		t.Errorf("default cache holds %d entries and %d bytes, over its bounds %d and %d", n, b, o.CacheEntries, o.CacheBytes)
	}
	t.Logf("FIGURE cache bound (defaults %d entries, %d MiB): after %d images: %d entries, %.1f MiB accounted, heap %.1f MiB",
		o.CacheEntries, o.CacheBytes>>20, passing, def.docs.len(), float64(def.docs.bytes)/(1<<20), float64(after-before)/(1<<20))
	runtime.KeepAlive(def)

	// A byte bound tighter than the entry bound.
	tight, err := NewRemote(Options{CacheEntries: images, CacheBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	f = newMemoryFiller(t, tight)
	for i := range 5_000 {
		f.add(t, i)
	}
	if n, b := tight.docs.len(), tight.docs.bytes; b > 8<<20 || n >= 5_000 {
		t.Errorf("an 8 MiB cache holds %d entries and %d bytes after 5000 images", n, b)
	}
	t.Logf("FIGURE cache bound (8 MiB, %d entries): after 5000 images: %d entries, %.1f MiB accounted",
		images, tight.docs.len(), float64(tight.docs.bytes)/(1<<20))
}
