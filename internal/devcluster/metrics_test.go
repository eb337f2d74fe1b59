package devcluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestLabelValues(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total"}, []string{"registry", "code"})
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "other_total"}, []string{"registry"})
	reg.MustRegister(requests, other)
	requests.WithLabelValues("quay.io", "200").Inc()
	requests.WithLabelValues("quay.io", "404").Inc()
	requests.WithLabelValues("other", "200").Inc()
	other.WithLabelValues("ghcr.io").Inc()

	got, err := LabelValues(reg, "requests_total", "registry")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{"quay.io": true, "other": true}, got); diff != "" {
		t.Errorf("registry values (-want +got):\n%s", diff)
	}
	if got, err := LabelValues(reg, "missing_total", "registry"); err != nil || len(got) != 0 {
		t.Errorf("a metric not gathered: %v, %v; want no values", got, err)
	}
}
