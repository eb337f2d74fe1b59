package devcluster

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRequestsCountsAllButWatches(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	var r Requests
	hc := &http.Client{Transport: r.Wrap(http.DefaultTransport)}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/namespaces/a/secrets/s"},
		{http.MethodGet, "/api/v1/namespaces/a/secrets/s"},
		{http.MethodGet, "/api/v1/pods?watch=true"},
		{http.MethodGet, "/apis/apps/v1/replicasets"},
		{http.MethodPost, "/apis/events.k8s.io/v1/namespaces/a/events"},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	got := r.Take()
	want := map[string]int{
		"GET /api/v1/namespaces/a/secrets/s":              2,
		"GET /apis/apps/v1/replicasets":                   1,
		"POST /apis/events.k8s.io/v1/namespaces/a/events": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if n := Reads(got); n != 3 {
		t.Errorf("Reads = %d, want 3", n)
	}
	if again := r.Take(); len(again) != 0 {
		t.Errorf("Take did not start again: %v", again)
	}
}
