package devcluster

import (
	"net/http"
	"strings"
	"sync"
)

// Requests counts the API requests a client makes, by method and path,
// leaving out the watches informers hold open: wrap a rest.Config with
// Wrap (cfg.Wrap(r.Wrap)). The zero value is ready to use and safe for
// concurrent use.
type Requests struct {
	mu     sync.Mutex
	counts map[string]int
}

// Wrap returns rt counting each request it sends but watches.
func (r *Requests) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Query().Get("watch") != "true" {
			r.mu.Lock()
			if r.counts == nil {
				r.counts = map[string]int{}
			}
			r.counts[req.Method+" "+req.URL.Path]++
			r.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

// Take returns the counts since the last call, keyed "METHOD /path", and
// starts again.
func (r *Requests) Take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.counts
	r.counts = nil
	return out
}

// Reads sums the GETs (a LIST is a GET of a collection) among counts.
func Reads(counts map[string]int) int {
	n := 0
	for req, c := range counts {
		if strings.HasPrefix(req, http.MethodGet+" ") {
			n += c
		}
	}
	return n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
