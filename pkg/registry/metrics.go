package registry

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// wellKnownRegistries always have their own value of the registry label:
// the public registries most clusters pull from (Docker Hub as ggcr names
// it, GitHub, Red Hat Quay, the Kubernetes project, Google, AWS and
// Microsoft public galleries). Account-specific hosts (ECR, Artifact
// Registry, ACR) are named by the policies that allow them.
var wellKnownRegistries = []string{
	"index.docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io", "public.ecr.aws", "mcr.microsoft.com",
}

// otherRegistry is the registry label of every host not named.
const otherRegistry = "other"

// metrics are the registry counters. Without a Registerer they still
// count, unexported, so code paths stay the same.
type metrics struct {
	requests *prometheus.CounterVec
	cacheOps *prometheus.CounterVec
	// named holds the hosts with their own registry label (see label).
	named atomic.Pointer[map[string]bool]
}

func newMetrics(reg prometheus.Registerer, hosts []string) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_registry_requests_total",
			Help: `Requests to image registries, by registry host (well-known public registries and hosts policies name; "other" for the rest) and outcome.`,
		}, []string{"registry", "outcome"}),
		cacheOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_image_cache_total",
			Help: "Image inspections served from the cache (hit) or fetched (miss).",
		}, []string{"result"}),
	}
	m.setHosts(hosts)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.cacheOps} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering registry metrics: %w", err)
			}
		}
	}
	return m, nil
}

// setHosts names the hosts, besides the well-known registries, that get
// their own registry label. Patterns (with * or ?) name nothing: their
// matches are chosen by whoever writes image references.
func (m *metrics) setHosts(hosts []string) {
	named := make(map[string]bool, len(wellKnownRegistries)+len(hosts))
	for _, h := range slices.Concat(wellKnownRegistries, hosts) {
		h = strings.ToLower(strings.TrimSpace(h))
		if h != "" && !strings.ContainsAny(h, "*?") {
			named[h] = true
		}
	}
	m.named.Store(&named)
}

// label is host's registry label value: host itself when named ("host" or
// "host:port"; a host named without a port stands for all its ports),
// otherwise "other". The values are bounded by the names, whatever hosts
// image references name.
func (m *metrics) label(host string) string {
	named := *m.named.Load()
	h := strings.ToLower(host)
	if named[h] {
		return h
	}
	if name, _, err := net.SplitHostPort(h); err == nil && named[name] {
		return name
	}
	return otherRegistry
}

func (m *metrics) request(registry, outcome string) {
	m.requests.WithLabelValues(m.label(registry), outcome).Inc()
}

func (m *metrics) cache(result string) { m.cacheOps.WithLabelValues(result).Inc() }
