package deploy

import (
	"encoding/json"
	"regexp"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The opt-in dashboard is a ConfigMap with the Grafana sidecar's label,
// holding a dashboard whose queries name only metrics slimgate exports,
// and every one of the rollout's: violations and bloat per namespace,
// decisions by mode, registry requests, scan progress.
func TestChartDashboard(t *testing.T) {
	needHelm(t)
	if objs := mustRenderChart(t); len(ofKind(objs, "ConfigMap")) != 0 {
		t.Fatal("the dashboard is rendered by default; it is opt-in")
	}
	objs := mustRenderChart(t, "dashboard.enabled=true")
	var cm corev1.ConfigMap
	if err := find(objs, "ConfigMap", "slimgate-dashboard", &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v lack grafana_dashboard: \"1\"", cm.Labels)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["slimgate.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	exported := []string{
		"slimgate_workloads_in_violation", "slimgate_bloat_bytes", "slimgate_scan_duration_seconds_sum",
		"slimgate_scan_duration_seconds_count", "slimgate_scan_images_total", "slimgate_scan_workloads",
		"slimgate_decisions_total", "slimgate_registry_requests_total",
	}
	metric := regexp.MustCompile(`slimgate_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			for _, m := range metric.FindAllString(q.Expr, -1) {
				if !slices.Contains(exported, m) {
					t.Errorf("query %q names %s, which slimgate does not export", q.Expr, m)
				}
				used[m] = true
			}
		}
	}
	for _, m := range exported {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
