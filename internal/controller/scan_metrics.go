package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"slimgate.dev/slimgate/pkg/fleet"
)

// scanMetrics are the background scan's Prometheus collectors. The
// per-namespace series exist for the (policy, namespace) pairs of the
// last scan only: pairs of a deleted namespace or policy are deleted with
// the next scan, so their number stays below policies times namespaces.
type scanMetrics struct {
	inViolation *prometheus.GaugeVec
	bloat       *prometheus.GaugeVec
	duration    prometheus.Histogram
	images      *prometheus.CounterVec
	workloads   *prometheus.GaugeVec
	pairs       map[[2]string]bool // series of the last scan
}

func newScanMetrics(reg prometheus.Registerer) (*scanMetrics, error) {
	m := &scanMetrics{
		inViolation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slimgate_workloads_in_violation",
			Help: "Workloads running an image the policy finds something in, per namespace, as of the last background scan.",
		}, []string{"policy", "namespace"}),
		bloat: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slimgate_bloat_bytes",
			Help: "Compressed bytes of toolchain layers running in workloads in violation, per policy and namespace (each image once per workload), as of the last background scan.",
		}, []string{"policy", "namespace"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "slimgate_scan_duration_seconds",
			Help:    "Time a background scan of every workload took.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_scan_images_total",
			Help: "Images of running workloads judged by background scans, per policy judging them, by result (pass, fail, warn, error, skip).",
		}, []string{"result"}),
		workloads: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slimgate_scan_workloads",
			Help: "Progress of the background scan under way (or the last): workloads queued (state=\"total\") and judged (state=\"judged\").",
		}, []string{"state"}),
		pairs: map[[2]string]bool{},
	}
	for _, c := range []prometheus.Collector{m.inViolation, m.bloat, m.duration, m.images, m.workloads} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []fleet.Result{fleet.ResultPass, fleet.ResultFail, fleet.ResultWarn, fleet.ResultError, fleet.ResultSkip} {
		m.images.WithLabelValues(string(r))
	}
	return m, nil
}

// progress records a scan's progress (fleet.Scanner.Progress).
func (m *scanMetrics) progress(done, total int) {
	m.workloads.WithLabelValues("judged").Set(float64(done))
	m.workloads.WithLabelValues("total").Set(float64(total))
}

// record sets the gauges from a scan's summaries, deletes the series of
// pairs it no longer has, and counts its image results.
func (m *scanMetrics) record(results []fleet.WorkloadResult, sums []fleet.Summary, seconds float64) {
	now := map[[2]string]bool{}
	for _, s := range sums {
		for _, ns := range s.Namespaces {
			pair := [2]string{s.Policy, ns.Namespace}
			now[pair] = true
			m.inViolation.WithLabelValues(pair[:]...).Set(float64(ns.InViolation))
			m.bloat.WithLabelValues(pair[:]...).Set(float64(ns.BloatBytes))
		}
	}
	for pair := range m.pairs {
		if !now[pair] {
			m.inViolation.DeleteLabelValues(pair[:]...)
			m.bloat.DeleteLabelValues(pair[:]...)
		}
	}
	m.pairs = now
	for _, w := range results {
		for _, r := range w.Images {
			m.images.WithLabelValues(string(r.Result)).Inc()
		}
	}
	m.duration.Observe(seconds)
}
