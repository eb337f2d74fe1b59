package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/egress"
)

// hashOf is the sha256 digest of b.
func hashOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// configDescriptor describes cfg as a manifest's Docker config.
func configDescriptor(cfg []byte) v1.Descriptor {
	return v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(cfg)), Digest: hashOf(cfg)}
}

// manifestFor builds a schema 2 manifest whose config descriptor is cfg.
func manifestFor(cfg v1.Descriptor) []byte {
	b, _ := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2, Config: cfg})
	return b
}

// hostileServer answers the ping and hands manifest and blob requests to h.
func hostileServer(t *testing.T, h http.HandlerFunc) (string, *atomic.Int32) {
	t.Helper()
	var blobs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		if strings.Contains(r.URL.Path, "/blobs/") {
			blobs.Add(1)
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &blobs
}

func TestHostileRegistries(t *testing.T) {
	base := runtime.NumGoroutine()
	goodCfg := []byte(`{"architecture":"amd64","os":"linux","config":{}}`)
	goodManifest := manifestFor(configDescriptor(goodCfg))
	serveManifest := func(mt string, body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") {
				w.Write(goodCfg)
				return
			}
			w.Header().Set("Content-Type", mt)
			w.Write(body)
		}
	}
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		ref      string // appended to host/; default "app:v1"
		deadline time.Duration
		reason   Reason
		message  string
		noBlobs  bool
	}{
		{
			name: "oversized manifest, streamed without length",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
				chunk := []byte(strings.Repeat(" ", 64<<10))
				for range 128 { // 8 MiB, twice the cap
					if _, err := w.Write(chunk); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
			},
			reason: ReasonTooLarge, message: "larger than the 4194304 bytes allowed", noBlobs: true,
		},
		{
			name:    "oversized declared config",
			handler: serveManifest(string(types.DockerManifestSchema2), manifestFor(v1.Descriptor{MediaType: types.DockerConfigJSON, Size: 100 << 20, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}})),
			reason:  ReasonTooLarge, message: "config blob declares 104857600 bytes", noBlobs: true,
		},
		{
			name: "never answers",
			handler: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			deadline: 300 * time.Millisecond,
			reason:   ReasonTimeout,
		},
		{
			name:    "wrong digest",
			handler: serveManifest(string(types.DockerManifestSchema2), goodManifest),
			ref:     "app@sha256:" + strings.Repeat("b", 64),
			reason:  ReasonInvalid, message: "was served with content of digest",
		},
		{
			name: "declared digest differs from content",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead {
					w.WriteHeader(http.StatusMethodNotAllowed)
					return
				}
				w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("c", 64))
				serveManifest(string(types.DockerManifestSchema2), goodManifest)(w, r)
			},
			reason: ReasonInvalid, message: "but the registry declared",
		},
		{
			name:    "too much history",
			handler: serveConfig(bigHistoryConfig(1001)),
			reason:  ReasonTooLarge, message: "config has 1001 history entries, more than the 1000 allowed",
		},
		{
			name:    "malformed JSON",
			handler: serveManifest(string(types.DockerManifestSchema2), []byte(`{"schemaVersion": 2, "config": `)),
			reason:  ReasonInvalid, message: "not valid JSON",
		},
		{
			name:    "unknown media type",
			handler: serveManifest("application/vnd.example.thing+json", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}`)),
			reason:  ReasonInvalid, message: `unsupported manifest media type "application/vnd.example.thing+json"`,
		},
		{
			name:    "schema 1",
			handler: serveManifest(string(types.DockerManifestSchema1Signed), []byte(`{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}`)),
			reason:  ReasonInvalid, message: "schema 1",
		},
		{
			name: "401",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"no access"}]}`, http.StatusUnauthorized)
			},
			reason: ReasonUnauthorized, message: "credentials missing or not accepted",
		},
		{
			name: "429 with a Retry-After longer than the deadline",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "30")
				w.WriteHeader(http.StatusTooManyRequests)
			},
			deadline: 2 * time.Second,
			reason:   ReasonRateLimited, message: "retry after 30s does not fit",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, blobs := hostileServer(t, tc.handler)
			r, _ := newTestRemote(t, Options{})
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			ref := tc.ref
			if ref == "" {
				ref = "app:v1"
			}
			start := time.Now()
			_, err := r.Inspect(ctx, plainRequest(host+"/"+ref, host))
			elapsed := time.Since(start)
			ie := wantReason(t, err, tc.reason)
			if !strings.Contains(ie.Error(), tc.message) {
				t.Errorf("error %q does not say %q", ie.Error(), tc.message)
			}
			if tc.deadline > 0 && elapsed > tc.deadline+200*time.Millisecond {
				t.Errorf("Inspect took %s, past its %s deadline", elapsed, tc.deadline)
			}
			if tc.noBlobs && blobs.Load() != 0 {
				t.Errorf("%d blob requests, want none", blobs.Load())
			}
		})
	}
	if err := devcluster.WaitGoroutines(base, 2*time.Second); err != nil {
		t.Error(err)
	}
}

func TestRetryAfterThatFits(t *testing.T) {
	var calls atomic.Int32
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{}}`)
	m := manifestFor(configDescriptor(cfg))
	host, _ := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w.Write(cfg)
			return
		}
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Header().Set("Docker-Content-Digest", hashOf(m).String())
		w.Write(m)
	})
	r, _ := newTestRemote(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	insp, err := r.Inspect(ctx, plainRequest(host+"/app:v1", host))
	if err != nil {
		t.Fatal(err)
	}
	if insp.Digest != hashOf(m).String() {
		t.Errorf("digest = %s, want %s", insp.Digest, hashOf(m).String())
	}
}

func TestEgressGuardOnRedirects(t *testing.T) {
	// The registry redirects its config blob elsewhere, as registries
	// backed by object storage do. The registry's own address is exempted
	// so the guard can be on while it listens on loopback.
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	otherPort := other.URL[strings.LastIndex(other.URL, ":")+1:]
	for _, tc := range []struct {
		target, message string
	}{
		{"http://127.0.0.1:" + otherPort + "/blob", "is a loopback address; refused by the egress guard"},
		{"http://169.254.169.254/latest/meta-data/", "registry 169.254.169.254 is a link-local address; refused by the egress guard"},
		{"http://[::1]:" + otherPort + "/blob", "is a loopback address"},
		{"http://localhost:" + otherPort + "/blob", "is a loopback name"},
		{"http://[::ffff:169.254.169.254]/latest/meta-data/", "is a link-local address"},
		{"http://[::ffff:127.0.0.1]:" + otherPort + "/blob", "is a loopback address"},
		// A name is checked where it is dialled, after it resolved (here
		// through HostAliases, as /etc/hosts would).
		{"http://metadata.example:" + otherPort + "/blob", "registry metadata.example resolves to a loopback address (127.0.0.1)"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			reg := newTestRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
						http.Redirect(w, r, tc.target, http.StatusTemporaryRedirect)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			ref := reg.push(t, "app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
			r, _ := newTestRemote(t, Options{EgressExempt: []string{reg.Host}, HostAliases: map[string]string{"metadata.example:" + otherPort: "127.0.0.1:" + otherPort}})
			req := Request{Reference: ref, Egress: EgressRules{Enabled: true, Insecure: []string{"127.0.0.1", "::1", "169.254.169.254", "localhost", "::ffff:169.254.169.254", "::ffff:127.0.0.1", "metadata.example"}}}
			_, err := r.Inspect(context.Background(), req)
			ie := wantReason(t, err, ReasonEgressRefused)
			if !strings.Contains(ie.Error(), tc.message) {
				t.Errorf("error %q does not say %q", ie.Error(), tc.message)
			}
			if elsewhere.Load() != 0 {
				t.Errorf("the redirect target was contacted %d times", elsewhere.Load())
			}
		})
	}
}

func TestEgressGuardRefusesRegistries(t *testing.T) {
	r, _ := newTestRemote(t, Options{})
	for _, tc := range []struct {
		ref     string
		rules   EgressRules
		message string
	}{
		{"169.254.169.254/latest:v1", EgressRules{Enabled: true}, "registry 169.254.169.254 is a link-local address; refused by the egress guard"},
		{"127.0.0.1:5000/app:v1", EgressRules{Enabled: true}, "registry 127.0.0.1:5000 is a loopback address"},
		{"10.1.2.3/app:v1", EgressRules{Enabled: true}, "is a private address"},
		{"localhost:5000/app:v1", EgressRules{Enabled: true}, "is a loopback name"},
		{"quay.io/app:v1", EgressRules{Enabled: true, AllowRegistries: []string{"ghcr.io", "*.example.com"}}, "not in the allowed registries"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := r.Inspect(ctx, Request{Reference: tc.ref, Egress: tc.rules})
			ie := wantReason(t, err, ReasonEgressRefused)
			if !strings.Contains(ie.Error(), tc.message) {
				t.Errorf("error %q does not say %q", ie.Error(), tc.message)
			}
		})
	}
	// Plain HTTP to a registry that is not listed as insecure is refused
	// even though ggcr falls back to it for loopback hosts once HTTPS
	// failed; that HTTPS failure, the registry's, is the reason.
	_, err := r.Inspect(context.Background(), Request{Reference: "127.0.0.1:1/app:v1"})
	ie := wantReason(t, err, ReasonUnavailable)
	for _, want := range []string{"connection refused", "plain HTTP to 127.0.0.1:1 is not allowed"} {
		if !strings.Contains(ie.Error(), want) {
			t.Errorf("error %q does not say %q", ie.Error(), want)
		}
	}
}

func TestGuardedTransportDialsOnlyPublicAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	r, _ := newTestRemote(t, Options{})
	// Names are resolved before the dial check runs, so this is the check
	// a DNS-rebinding name would meet.
	ctx := egress.WithDialHost(context.Background(), "rebind.example.com")
	if c, err := r.guarded.DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Fatal("guarded transport dialled a loopback address")
	} else if reasonOf(err) != ReasonEgressRefused || !strings.Contains(err.Error(), "registry rebind.example.com resolves to a loopback address (127.0.0.1)") {
		t.Errorf("err = %v", err)
	}
	c, err := r.open.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("open transport: %v", err)
	}
	c.Close()
}

func TestCappedBody(t *testing.T) {
	for _, n := range []int{10, 11, 1000} {
		body := &cappedBody{rc: readCloser{strings.NewReader(strings.Repeat("x", n))}, left: 10}
		b, err := readBody(body, 1<<20, "body")
		if n <= 10 && (err != nil || len(b) != n) {
			t.Errorf("%d bytes: got %d, %v", n, len(b), err)
		}
		if n > 10 && reasonOf(err) != ReasonTooLarge {
			t.Errorf("%d bytes: err = %v, want too large", n, err)
		}
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// serveConfig serves a manifest for cfg and cfg itself.
func serveConfig(cfg []byte) http.HandlerFunc {
	m := manifestFor(configDescriptor(cfg))
	return func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w.Write(cfg)
			return
		}
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Write(m)
	}
}

func bigHistoryConfig(n int) []byte {
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64", History: make([]v1.History, n)}
	for i := range cfg.History {
		cfg.History[i] = v1.History{CreatedBy: "RUN true", EmptyLayer: true}
	}
	b, _ := json.Marshal(cfg)
	return b
}
