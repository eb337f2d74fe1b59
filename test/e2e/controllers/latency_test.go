package controllers

import (
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// webhookLatencies returns, for the rollouts' Pod reviews so far, the
// mean time the API server waited for slimgate's Pod webhook and for the
// noop webhook's (apiserver_admission_webhook_admission_duration_seconds)
// and the mean time slimgate's server spent on a Pod review
// (controller_runtime_webhook_latency_seconds): what the wait costs
// beyond the server's work.
func webhookLatencies(t *testing.T) string {
	t.Helper()
	hc, err := rest.HTTPClientFor(e2e.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(strings.TrimSuffix(e2e.Env.Config.Host, "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	api, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	own, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	mean := func(f *dto.MetricFamily, labels map[string]string) string {
		var sum float64
		var n uint64
		for _, m := range f.GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					match = false
				}
			}
			if match {
				sum, n = sum+m.GetHistogram().GetSampleSum(), n+m.GetHistogram().GetSampleCount()
			}
		}
		if n == 0 {
			return "none"
		}
		return fmt.Sprintf("%.2f ms (%d reviews)", 1000*sum/float64(n), n)
	}
	admission := api["apiserver_admission_webhook_admission_duration_seconds"]
	var server *dto.MetricFamily
	for _, f := range own {
		if f.GetName() == "controller_runtime_webhook_latency_seconds" {
			server = f
		}
	}
	return fmt.Sprintf("Pod webhook, mean over the run: the API server waited %s for slimgate, %s for the noop webhook; slimgate's server spent %s",
		mean(admission, map[string]string{"name": "pods.slimgate.dev", "operation": "CREATE"}),
		mean(admission, map[string]string{"name": "noop-pods.slimgate.dev", "operation": "CREATE"}),
		mean(server, map[string]string{"webhook": "/validate-pods"}))
}
