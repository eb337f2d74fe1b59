package admission

import (
	"context"
	"net/http"
	"time"
)

// Budget derives each review's deadline from the API server's own timeout.
type Budget struct {
	// Default is assumed when the request carries no timeout (10 s).
	Default time.Duration
	// Margin is kept back for answering (1 s).
	Margin time.Duration
}

// For returns the time slimgate may spend on a request whose API server
// timeout is the query's "timeout" value ("10s"): the timeout minus the
// margin, or half the timeout when it is shorter than twice the margin.
func (b Budget) For(query string) time.Duration {
	def, margin := b.Default, b.Margin
	if def <= 0 {
		def = 10 * time.Second
	}
	if margin <= 0 {
		margin = time.Second
	}
	t := def
	if d, err := time.ParseDuration(query); err == nil && d > 0 {
		t = d
	}
	if t < 2*margin {
		return t / 2
	}
	return t - margin
}

// Wrap sets a context deadline on every request from its timeout, so that
// registry calls end in time for onInspectionError to decide.
func (b Budget) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), b.For(r.URL.Query().Get("timeout")))
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
