package devcluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// LabelValues returns the values label takes in the series of metric
// that g gathers.
func LabelValues(g prometheus.Gatherer, metric, label string) (map[string]bool, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering metrics: %w", err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] = true
				}
			}
		}
	}
	return out, nil
}
