package deploy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// rollout is what keeps the webhook available and confined while the
// cluster changes under it: replicas spread over nodes, a disruption
// budget, the namespace it runs in, security contexts, probes and
// resources.
type rollout struct {
	Replicas            *int32
	GracePeriod         *int64
	PodSecurity         *corev1.PodSecurityContext
	ContainerSecurity   *corev1.SecurityContext
	Liveness, Readiness *corev1.Probe
	Resources           corev1.ResourceRequirements
	Env                 []corev1.EnvVar
	// Spread and the budget, without their selectors (the label sets
	// differ); each must select the Deployment's Pods.
	Spread                       []corev1.TopologySpreadConstraint
	MinAvailable, MaxUnavailable *intstr.IntOrString
}

// rolloutOf reads the rollout of the webhook's Deployment and budget.
func rolloutOf(t *testing.T, objs []*unstructured.Unstructured) rollout {
	t.Helper()
	var d appsv1.Deployment
	if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	r := rollout{Replicas: d.Spec.Replicas, GracePeriod: pod.TerminationGracePeriodSeconds, PodSecurity: pod.SecurityContext,
		ContainerSecurity: c.SecurityContext, Liveness: c.LivenessProbe, Readiness: c.ReadinessProbe, Resources: c.Resources, Env: c.Env}
	selects := func(what string, sel *metav1.LabelSelector) {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("the %s's selector %v does not select the webhook's Pods (%v)", what, sel, d.Spec.Template.Labels)
		}
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		selects("topology spread constraint", tsc.LabelSelector)
		tsc.LabelSelector = nil
		r.Spread = append(r.Spread, tsc)
	}
	var pdb policyv1.PodDisruptionBudget
	if err := find(objs, "PodDisruptionBudget", "slimgate-webhook", &pdb); err != nil {
		t.Error(err)
		return r
	}
	selects("PodDisruptionBudget", pdb.Spec.Selector)
	r.MinAvailable, r.MaxUnavailable = pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable
	return r
}

// config/default and the chart (its default values, with cert-manager as
// config/default uses it) deploy the webhook alike: two replicas spread
// over nodes, of which a drain leaves one, told the namespace they run in
// (config/default may be moved to another), under the same security
// contexts, probes and resources.
func TestKustomizeDeploymentMatchesChart(t *testing.T) {
	needHelm(t)
	chart := rolloutOf(t, mustRenderChart(t, "certManager.enabled=true"))
	kustomize := rolloutOf(t, renderDefault(t))
	if diff := cmp.Diff(chart, kustomize); diff != "" {
		t.Errorf("the webhook's rollout, chart (-) and config/default (+):\n%s", diff)
	}
	if chart.Replicas == nil || *chart.Replicas < 2 || chart.MinAvailable == nil || chart.MinAvailable.IntValue() != 1 {
		t.Errorf("chart: replicas %v, minAvailable %v; want at least 2 and 1", chart.Replicas, chart.MinAvailable)
	}
}

// A disruption budget that allows no eviction holds every node drain (a
// cluster upgrade) for as long as it exists: the chart refuses one,
// rather than render it, and renders the budgets that leave a replica to
// evict.
func TestChartRefusesDrainBlockingBudget(t *testing.T) {
	needHelm(t)
	const want = "podDisruptionBudget allows no eviction"
	for _, set := range [][]string{
		{"replicaCount=3", "podDisruptionBudget.minAvailable=3"},
		{"podDisruptionBudget.minAvailable=100%"},
		{"replicaCount=2", "podDisruptionBudget.minAvailable=51%"},
		{"podDisruptionBudget.minAvailable=", "podDisruptionBudget.maxUnavailable=0"},
		{"podDisruptionBudget.minAvailable=", "podDisruptionBudget.maxUnavailable=0%"},
	} {
		if _, err := helmTemplate(set...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("helm template %v: error %v, want one saying %q", set, err, want)
		}
	}
	// One replica gets no budget at all: none can keep it up through a
	// drain without holding the drain.
	for _, set := range [][]string{{"replicaCount=1"}, {"replicaCount=1", "podDisruptionBudget.minAvailable=50%"}} {
		out, err := helmTemplate(set...)
		if err != nil {
			t.Errorf("helm template %v: %v", set, err)
		} else if strings.Contains(string(out), "kind: PodDisruptionBudget") {
			t.Errorf("helm template %v renders a PodDisruptionBudget for one replica", set)
		}
	}
	for _, set := range [][]string{
		{},
		{"replicaCount=1", "podDisruptionBudget.enabled=false"},
		{"replicaCount=3", "podDisruptionBudget.minAvailable=2"},
		{"replicaCount=3", "podDisruptionBudget.minAvailable=50%"},
		{"podDisruptionBudget.minAvailable=", "podDisruptionBudget.maxUnavailable=1%"},
	} {
		if _, err := helmTemplate(set...); err != nil {
			t.Errorf("helm template %v: %v", set, err)
		}
	}
}
