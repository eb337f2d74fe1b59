package registry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry counters. Without a Registerer they still
// count, unexported, so code paths stay the same.
type metrics struct {
	requests *prometheus.CounterVec
	cacheOps *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_registry_requests_total",
			Help: "Requests to image registries, by registry host and outcome.",
		}, []string{"registry", "outcome"}),
		cacheOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_image_cache_total",
			Help: "Image inspections served from the cache (hit) or fetched (miss).",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.cacheOps} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering registry metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) request(registry, outcome string) {
	m.requests.WithLabelValues(registry, outcome).Inc()
}

func (m *metrics) cache(result string) { m.cacheOps.WithLabelValues(result).Inc() }
