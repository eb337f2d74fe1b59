package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestFinishOnShutdown checks which endings of a request's context reach
// the review: a client going away does, a server shutting down does not.
func TestFinishOnShutdown(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stopping   bool
		wantCancel bool
	}{
		{name: "client goes away while serving", stopping: false, wantCancel: true},
		{name: "server shuts down", stopping: true, wantCancel: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stopping := make(chan struct{})
			if tc.stopping {
				close(stopping)
			}
			reqCtx, endRequest := context.WithCancel(context.Background())
			defer endRequest()
			cancelled := make(chan bool, 1)
			h := finishOnShutdown(stopping, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				endRequest()
				select {
				case <-r.Context().Done():
					cancelled <- true
				case <-time.After(200 * time.Millisecond):
					cancelled <- false
				}
			}))
			r := httptest.NewRequest(http.MethodPost, "/validate-pods", nil).WithContext(reqCtx)
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got := <-cancelled; got != tc.wantCancel {
				t.Errorf("review's context cancelled: %v, want %v", got, tc.wantCancel)
			}
		})
	}
}
