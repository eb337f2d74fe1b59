package devcluster

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// CountingRegistry is an in-memory registry (NewRegistry) on a loopback
// port, over plain HTTP, that counts the requests it answers by
// RequestKind and remembers the Authorization headers they carry and the
// digests of the blobs they fetch. What Push sends is not counted.
type CountingRegistry struct {
	// Host is the registry's host, 127.0.0.1:port.
	Host string
	// Server serves the registry; closing it makes the registry vanish.
	Server *httptest.Server

	delay    time.Duration
	counting atomic.Bool

	mu     sync.Mutex
	counts map[string]int
	blobs  []string
	auth   []string
}

// StartCountingRegistry starts a counting registry; Close stops it. wrap,
// when not nil, wraps the registry's handler for every request, pushes
// included. Each counted request is answered delay late.
func StartCountingRegistry(wrap func(http.Handler) http.Handler, delay time.Duration) *CountingRegistry {
	r := &CountingRegistry{delay: delay, counts: map[string]int{}}
	h := NewRegistry()
	if wrap != nil {
		h = wrap(h)
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.counting.Load() {
			r.record(req)
			if r.delay > 0 {
				time.Sleep(r.delay)
			}
		}
		h.ServeHTTP(w, req)
	}))
	r.Host = strings.TrimPrefix(r.Server.URL, "http://")
	r.counting.Store(true)
	return r
}

func (r *CountingRegistry) record(req *http.Request) {
	kind := RequestKind(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[kind]++
	if a := req.Header.Get("Authorization"); a != "" {
		r.auth = append(r.auth, a)
	}
	if strings.HasPrefix(kind, "blob ") {
		r.blobs = append(r.blobs, req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:])
	}
}

// Close stops the registry.
func (r *CountingRegistry) Close() { r.Server.Close() }

// Push uploads an image or an index as Host/repoTag, uncounted, and
// returns its reference.
func (r *CountingRegistry) Push(repoTag string, img remote.Taggable, opts ...remote.Option) (string, error) {
	r.counting.Store(false)
	defer r.counting.Store(true)
	ref := r.Host + "/" + repoTag
	return ref, Push(ref, img, opts...)
}

// Counts returns the requests counted since the start or the last Reset,
// by kind.
func (r *CountingRegistry) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}

// Blobs returns the digests of the blobs requested since the start or the
// last Reset, in order.
func (r *CountingRegistry) Blobs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.blobs...)
}

// Authorizations returns the Authorization headers of the requests counted
// since the start or the last Reset, in order.
func (r *CountingRegistry) Authorizations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auth...)
}

// Reset forgets what was counted.
func (r *CountingRegistry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.counts)
	r.blobs, r.auth = nil, nil
}
