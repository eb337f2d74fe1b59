package inspection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// verdict is what the webhook decides for ref under spec: inspect it, then
// judge each image, or judge the failure as the policy says.
func verdict(t *testing.T, r *registry.Remote, req registry.Request, spec *v1alpha1.SlimImagePolicySpec) []policy.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	insp, err := r.Inspect(ctx, req)
	if err != nil {
		f := Classify(err, errors.Is(ctx.Err(), context.DeadlineExceeded))
		return []policy.Result{policy.InspectionFailed(spec, req.Reference, f)}
	}
	c, err := policy.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	var out []policy.Result
	for _, f := range insp.Images {
		out = append(out, c.Evaluate(ctx, f))
	}
	return out
}

// denied reports whether any result denies, and lists the rules found.
func denied(rs []policy.Result) (bool, []string) {
	deny := false
	var rules []string
	for _, r := range rs {
		deny = deny || r.Verdict == policy.VerdictDeny
		for _, f := range r.Findings {
			rules = append(rules, f.Rule)
		}
	}
	return deny, rules
}

// enforceAllow is the default policy: Enforce, onInspectionError Allow.
func enforceAllow() *v1alpha1.SlimImagePolicySpec {
	spec := policy.Default().Spec
	spec.Mode, spec.OnInspectionError = v1alpha1.ModeEnforce, v1alpha1.InspectionErrorAllow
	return &spec
}

func newRemote(t *testing.T, opts registry.Options) *registry.Remote {
	t.Helper()
	opts.Registerer = prometheus.NewRegistry()
	r, err := registry.NewRemote(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func digestOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blobs serves manifests and blobs by digest and tag from a map of path
// suffix ("manifests/v1", "blobs/sha256:...") to body; the ping answers,
// everything else is 404.
type blobs map[string][]byte

func (b blobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	for suffix, body := range b {
		if strings.HasSuffix(r.URL.Path, "/"+suffix) {
			if strings.Contains(suffix, "manifests/") {
				var peek struct {
					MediaType string `json:"mediaType"`
				}
				_ = json.Unmarshal(body, &peek)
				w.Header().Set("Content-Type", peek.MediaType)
			}
			w.Write(body)
			return
		}
	}
	http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}`, http.StatusNotFound)
}

// always serves the manifest tagged v1 for every manifest asked for and
// the one blob there is for every blob: a registry that lies about
// digests.
func (b blobs) always() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for suffix, body := range b {
			if strings.HasPrefix(suffix, "blobs/") && strings.Contains(r.URL.Path, "/blobs/") {
				w.Write(body)
				return
			}
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
			w.Write(b["manifests/v1"])
		}
	})
}

// serve starts a plain HTTP registry answering with h and returns its host.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// imageParts is a schema 2 manifest and its config, both tweakable.
func imageParts(t *testing.T, cfg any, tweak func(*v1.Manifest)) blobs {
	t.Helper()
	raw, ok := cfg.([]byte)
	if !ok {
		raw = mustJSON(t, cfg)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2,
		Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(raw)), Digest: digestOf(raw)}}
	if tweak != nil {
		tweak(&m)
	}
	mb := mustJSON(t, m)
	return blobs{"manifests/v1": mb, "manifests/" + digestOf(mb).String(): mb, "blobs/" + digestOf(raw).String(): raw}
}

func slimConfig() *v1.ConfigFile {
	return &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: v1.Config{Env: []string{"PATH=/usr/bin"}},
		History: []v1.History{{CreatedBy: "COPY app /app # buildkit", EmptyLayer: true}}}
}

// TestAuthorControlledFailuresAreViolations: whatever the image's author
// (or the workload's author, who names the image) controls is judged as a
// violation under the default policy (Enforce, onInspectionError Allow),
// never admitted as "could not inspect".
func TestAuthorControlledFailuresAreViolations(t *testing.T) {
	base := runtime.NumGoroutine()
	many := func(n int, f func(i int, c *v1.ConfigFile)) *v1.ConfigFile {
		c := slimConfig()
		for i := range n {
			f(i, c)
		}
		return c
	}
	layers := func(n int) func(*v1.Manifest) {
		return func(m *v1.Manifest) {
			for i := range n {
				m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: 1, Digest: digestOf([]byte(fmt.Sprint(i)))})
			}
		}
	}
	withIndex := func(b blobs, entries ...v1.Descriptor) blobs {
		idx := mustJSON(t, v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: entries})
		b["manifests/v1"] = idx
		return b
	}
	slim := imageParts(t, slimConfig(), nil)
	slimManifest := slim["manifests/v1"]
	amd64 := &v1.Platform{OS: "linux", Architecture: "amd64"}
	for _, tc := range []struct {
		name    string
		handler http.Handler
		ref     string // after host/; default app:v1
		egress  *registry.EgressRules
		reason  registry.Reason
	}{
		{name: "config over the size cap", reason: registry.ReasonTooLarge, handler: imageParts(t, slimConfig(), func(m *v1.Manifest) { m.Config.Size = 9 << 20 })},
		{name: "manifest over the size cap", reason: registry.ReasonTooLarge, handler: blobs{"manifests/v1": []byte(`{"schemaVersion":2,"pad":"` + strings.Repeat("x", 5<<20) + `"}`)}},
		{name: "too many history entries", reason: registry.ReasonTooLarge, handler: imageParts(t, many(1001, func(_ int, c *v1.ConfigFile) {
			c.History = append(c.History, v1.History{CreatedBy: "RUN true", EmptyLayer: true})
		}), nil)},
		{name: "too many env entries", reason: registry.ReasonTooLarge, handler: imageParts(t, many(1001, func(i int, c *v1.ConfigFile) {
			c.Config.Env = append(c.Config.Env, fmt.Sprintf("V%d=1", i))
		}), nil)},
		{name: "too many labels", reason: registry.ReasonTooLarge, handler: imageParts(t, many(1001, func(i int, c *v1.ConfigFile) {
			if c.Config.Labels == nil {
				c.Config.Labels = map[string]string{}
			}
			c.Config.Labels[fmt.Sprint(i)] = "x"
		}), nil)},
		{name: "too many layers", reason: registry.ReasonTooLarge, handler: imageParts(t, slimConfig(), layers(1001))},
		{name: "layer sizes that add up past int64", reason: registry.ReasonInvalid, handler: imageParts(t, slimConfig(), func(m *v1.Manifest) {
			for i := range 2 {
				m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: math.MaxInt64/2 + 1, Digest: digestOf([]byte(fmt.Sprint(i)))})
			}
		})},
		{name: "too many JSON values in the config", reason: registry.ReasonTooLarge, handler: imageParts(t,
			[]byte(`{"os":"linux","architecture":"amd64","history":[`+strings.Repeat(`{},`, 40000)+`{}]}`), nil)},
		{name: "index names a manifest the registry lacks", reason: registry.ReasonInvalid, handler: withIndex(blobs{},
			v1.Descriptor{MediaType: types.DockerManifestSchema2, Size: 100, Digest: digestOf([]byte("absent")), Platform: amd64})},
		{name: "unsupported manifest media type", reason: registry.ReasonInvalid, handler: blobs{"manifests/v1": []byte(`{"schemaVersion":2,"mediaType":"application/vnd.example+json"}`)}},
		{name: "unsupported config media type", reason: registry.ReasonInvalid, handler: imageParts(t, slimConfig(), func(m *v1.Manifest) { m.Config.MediaType = "application/vnd.example.config+json" })},
		{name: "unsupported digest algorithm in an index", reason: registry.ReasonInvalid, handler: withIndex(blobs{},
			v1.Descriptor{MediaType: types.DockerManifestSchema2, Size: int64(len(slimManifest)), Digest: v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("ab", 64)}, Platform: amd64})},
		{name: "malformed manifest JSON", reason: registry.ReasonInvalid, handler: blobs{"manifests/v1": []byte(`{"schemaVersion":2,"config":`)}},
		{name: "malformed config JSON", reason: registry.ReasonInvalid, handler: imageParts(t, []byte(`{"os":"linux","history":[`), nil)},
		{name: "manifest digest mismatch", reason: registry.ReasonInvalid, handler: slim.always(), ref: "app@" + digestOf([]byte("other")).String()},
		{name: "config shorter than declared", reason: registry.ReasonInvalid, handler: imageParts(t, slimConfig(), func(m *v1.Manifest) { m.Config.Size += 10 })},
		{name: "config longer than declared", reason: registry.ReasonInvalid, handler: imageParts(t, slimConfig(), func(m *v1.Manifest) { m.Config.Size -= 10 })},
		{name: "config digest mismatch", reason: registry.ReasonInvalid, handler: imageParts(t, slimConfig(), func(m *v1.Manifest) { m.Config.Digest = digestOf([]byte("other")) }).always()},
		{name: "schema 1", reason: registry.ReasonInvalid, handler: blobs{"manifests/v1": []byte(`{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}`)}},
		{name: "unknown tag", reason: registry.ReasonNotFound, handler: slim, ref: "app:typo"},
		{name: "malformed reference", reason: registry.ReasonBadReference, handler: slim, ref: "App:v1"},
		{name: "registry the policy refuses", reason: registry.ReasonEgressRefused, handler: slim, egress: &registry.EgressRules{Enabled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := serve(t, tc.handler)
			ref := tc.ref
			if ref == "" {
				ref = "app:v1"
			}
			req := registry.Request{Reference: host + "/" + ref, Egress: registry.EgressRules{Insecure: []string{host}}}
			if tc.egress != nil {
				req.Egress = *tc.egress
				req.Egress.Insecure = []string{host}
			}
			rs := verdict(t, newRemote(t, registry.Options{}), req, enforceAllow())
			deny, rules := denied(rs)
			if !deny || len(rules) != 1 || rules[0] != "inspection.invalid" {
				t.Fatalf("verdict %v with rules %q, want a denial for inspection.invalid (results %+v)", deny, rules, rs)
			}
			if got := rs[0].Findings[0].Evidence.Reason; got != string(tc.reason) {
				t.Errorf("reason %s, want %s (%s)", got, tc.reason, rs[0].Findings[0].Message)
			}
		})
	}
	if err := devcluster.WaitGoroutines(base+2, 5*time.Second); err != nil {
		t.Error(err)
	}
}

// TestAvailabilityFailuresFollowOnInspectionError: failures of the
// registry, the network or our own credentials are admitted with a note
// under onInspectionError Allow and denied as inspection.failed under Deny.
func TestAvailabilityFailuresFollowOnInspectionError(t *testing.T) {
	base := runtime.NumGoroutine()
	status := func(code int, header ...string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(code)
		})
	}
	tlsHost := func(t *testing.T) string {
		srv := httptest.NewTLSServer(imageParts(t, slimConfig(), nil))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "https://")
	}
	for _, tc := range []struct {
		name   string
		host   func(t *testing.T) string
		plain  bool
		reason registry.Reason
	}{
		{name: "server errors", host: func(t *testing.T) string { return serve(t, status(http.StatusInternalServerError)) }, plain: true, reason: registry.ReasonUnavailable},
		{name: "nothing listens", host: func(t *testing.T) string {
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close()
			return strings.TrimPrefix(srv.URL, "http://")
		}, plain: true, reason: registry.ReasonUnavailable},
		{name: "untrusted certificate", host: tlsHost, reason: registry.ReasonUnavailable},
		{name: "rate limited", host: func(t *testing.T) string {
			return serve(t, status(http.StatusTooManyRequests, "Retry-After", "60"))
		}, plain: true, reason: registry.ReasonRateLimited},
		{name: "connection cut in the middle of the config", host: func(t *testing.T) string {
			parts := imageParts(t, slimConfig(), nil)
			return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.URL.Path, "/blobs/") {
					parts.ServeHTTP(w, r)
					return
				}
				for suffix, body := range parts {
					if strings.HasPrefix(suffix, "blobs/") {
						w.Header().Set("Content-Length", fmt.Sprint(len(body)))
						w.Write(body[:len(body)/2])
						w.(http.Flusher).Flush()
						panic(http.ErrAbortHandler) // closes the connection
					}
				}
			}))
		}, plain: true, reason: registry.ReasonUnavailable},
		{name: "credentials refused", host: func(t *testing.T) string { return serve(t, status(http.StatusUnauthorized)) }, plain: true, reason: registry.ReasonUnauthorized},
		{name: "never answers", host: func(t *testing.T) string {
			return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/" {
					<-r.Context().Done()
				}
			}))
		}, plain: true, reason: registry.ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host(t)
			req := registry.Request{Reference: host + "/app:v1"}
			if tc.plain {
				req.Egress.Insecure = []string{host}
			}
			allow := enforceAllow()
			rs := verdict(t, newRemote(t, registry.Options{Retries: -1}), req, allow)
			if deny, rules := denied(rs); deny || len(rules) != 0 || len(rs[0].Notes) != 1 || !strings.Contains(rs[0].Notes[0], "("+string(tc.reason)+")") {
				t.Errorf("onInspectionError Allow: verdict %v, rules %q, notes %q; want admitted with a note naming %s", deny, rules, rs[0].Notes, tc.reason)
			}
			deny := *allow
			deny.OnInspectionError = v1alpha1.InspectionErrorDeny
			rs = verdict(t, newRemote(t, registry.Options{Retries: -1}), req, &deny)
			if d, rules := denied(rs); !d || len(rules) != 1 || rules[0] != policy.RuleInspectionFailed {
				t.Errorf("onInspectionError Deny: verdict %v, rules %q; want a denial for inspection.failed", d, rules)
			}
		})
	}
	if err := devcluster.WaitGoroutines(base+2, 5*time.Second); err != nil {
		t.Error(err)
	}
}
