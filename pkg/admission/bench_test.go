package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The benchmarks here measure slimgate's admission path against floors
// measured in the same run; docs/benchmarks.md reports the ratios and
// `make bench` runs them.

// benchFixtures are real image configs (pkg/policy/testdata/images) the
// benchmark Deployment runs: 11, 15 and 25 history entries, all admitted
// by the default policy.
var benchFixtures = []string{"nginx-1.17.0.json", "httpd-2.4.23.json", "tomcat-8.5.77-jre11-app.json"}

// deploymentReview is the AdmissionReview of a CREATE of a Deployment with
// one container per image, shaped like a real one (labels, ports, probes,
// resources, env).
func deploymentReview(tb testing.TB, images []string) []byte {
	tb.Helper()
	labels := map[string]string{"app.kubernetes.io/name": "shop", "app.kubernetes.io/component": "web", "team": "payments"}
	var containers []corev1.Container
	for i, img := range images {
		containers = append(containers, corev1.Container{
			Name:  fmt.Sprintf("c%d", i),
			Image: img,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(8080 + i)}},
			Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 5},
		})
	}
	replicas := int32(3)
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{ServiceAccountName: "shop", Containers: containers},
			},
		},
	}
	return reviewOf(tb, d, "apps", "Deployment", "deployments")
}

// allowAll answers every review Allowed: the floor.
type allowAll struct{}

func (allowAll) Handle(context.Context, admission.Request) admission.Response {
	return admission.Allowed("")
}

// admitLoop serves body until the benchmark ends, failing on anything but
// an allowed answer.
func admitLoop(b *testing.B, h http.Handler, body []byte) {
	b.ReportAllocs()
	for b.Loop() {
		w := serve(h, body)
		if !answeredAllowed(w) {
			b.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
	}
}

// review posts body to h and decodes the answer.
func review(tb testing.TB, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	tb.Helper()
	w := serve(h, body)
	if w.Code != http.StatusOK {
		tb.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil {
		tb.Fatalf("decoding the answer: %v", err)
	}
	if ar.Response == nil {
		tb.Fatal("the answer has no response")
	}
	return ar.Response
}

// warmSetup pushes the three fixture images, builds the real handler and
// the review, and runs the review once so every cache is warm.
func warmSetup(tb testing.TB, useFake bool) (http.Handler, []byte, *benchRegistry) {
	tb.Helper()
	reg := newBenchRegistry(tb, 0)
	var refs []string
	for i, f := range benchFixtures {
		refs = append(refs, reg.push(tb, fmt.Sprintf("shop/part%d:1.0", i), fixtureImage(tb, f, "")))
	}
	h, _ := benchHandler(tb, benchReader(tb, benchPolicy(reg.Host), useFake), 0)
	body := deploymentReview(tb, refs)
	srv := serving(h, true)
	if resp := review(tb, srv, body); !resp.Allowed {
		tb.Fatalf("warm-up review denied: %v", resp.Result)
	}
	reg.Reset()
	return srv, body, reg
}

// BenchmarkDecodeFloor decodes the review of a 3-container Deployment and
// encodes an allowed answer, through controller-runtime's webhook.Admission
// with a handler that only answers Allowed.
func BenchmarkDecodeFloor(b *testing.B) {
	body := deploymentReview(b, []string{"nginx:1.17.0", "httpd:2.4.23", "tomcat:8.5.77"})
	srv := serving(allowAll{}, false)
	if resp := review(b, srv, body); !resp.Allowed {
		b.Fatal("the floor denied")
	}
	admitLoop(b, srv, body)
}

// BenchmarkAdmitWarm runs the same review through the real handler (budget
// wrapper, policy lookup, registry cache, policy evaluation, decision
// metrics) with every image cached. It fails if any request reaches the
// registry.
func BenchmarkAdmitWarm(b *testing.B) {
	srv, body, reg := warmSetup(b, false)
	admitLoop(b, srv, body)
	if counts, n := reg.snapshot(); n != 0 {
		b.Fatalf("a warm review reached the registry: %v", counts)
	}
}

// BenchmarkAdmitWarmFakeClient is BenchmarkAdmitWarm reading policies
// through controller-runtime's fake client, to show what that reader costs.
func BenchmarkAdmitWarmFakeClient(b *testing.B) {
	srv, body, _ := warmSetup(b, true)
	admitLoop(b, srv, body)
}

// BenchmarkWideColdPod admits a Pod of 50 containers, each a distinct
// uncached image, from a registry that takes 50 ms per request, at several
// inspection concurrencies (16 is the --inspect-concurrency default). It
// reports the review's time against the serial estimate (requests times
// 50 ms) and fails if the review misses the 9 s budget (10 s API server
// timeout minus the 1 s margin).
func BenchmarkWideColdPod(b *testing.B) {
	const (
		images  = 50
		latency = 50 * time.Millisecond
		budget  = 9 * time.Second
	)
	reg := newBenchRegistry(b, latency)
	refs := make([]string, images)
	for i := range refs {
		refs[i] = reg.push(b, fmt.Sprintf("wide/svc%02d:1.0", i), fixtureImage(b, benchFixtures[i%len(benchFixtures)], fmt.Sprint(i)))
	}
	body := podReview(b, "wide", refs)
	rd := benchReader(b, benchPolicy(reg.Host), false)
	for _, conc := range []int{8, 16, 50} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			var requests int
			var worst time.Duration
			for b.Loop() {
				b.StopTimer()
				h, remote := benchHandler(b, rd, conc) // empty caches
				srv := serving(h, true)
				reg.Reset()
				b.StartTimer()
				start := time.Now()
				w := serve(srv, body)
				took := time.Since(start)
				b.StopTimer()
				remote.Close()
				if !answeredAllowed(w) {
					b.Fatalf("status %d: %s", w.Code, w.Body.String())
				}
				if took > budget {
					b.Fatalf("a %d-image Pod took %v, over the %v budget", images, took, budget)
				}
				_, requests = reg.snapshot()
				worst = max(worst, took)
				b.StartTimer()
			}
			serial := time.Duration(requests) * latency
			b.ReportMetric(float64(requests), "requests/review")
			b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
			b.ReportMetric(float64(serial.Milliseconds()), "serial-estimate-ms")
		})
	}
}

// TestWarmRatio runs BenchmarkDecodeFloor and BenchmarkAdmitWarm in turn,
// five times each, and checks the median of the per-round ratios against
// the target (AdmitWarm at most twice the floor). Interleaving keeps a
// noisy machine's drift out of the ratio. It is a measurement, run by
// `make bench` (SLIMGATE_BENCH=1), not by `go test`.
func TestWarmRatio(t *testing.T) {
	if os.Getenv("SLIMGATE_BENCH") == "" {
		t.Skip("a measurement: set SLIMGATE_BENCH=1 (make bench runs it)")
	}
	const rounds, target = 5, 2.0
	var ratios []float64
	var floor, warm testing.BenchmarkResult
	for range rounds {
		floor = testing.Benchmark(BenchmarkDecodeFloor)
		warm = testing.Benchmark(BenchmarkAdmitWarm)
		if floor.N == 0 || warm.N == 0 {
			t.Fatal("a benchmark failed; run it with go test -bench to see why")
		}
		r := float64(warm.NsPerOp()) / float64(floor.NsPerOp())
		ratios = append(ratios, r)
		t.Logf("round: floor %d ns/op %d allocs/op, warm %d ns/op %d allocs/op, ratio %.2f",
			floor.NsPerOp(), floor.AllocsPerOp(), warm.NsPerOp(), warm.AllocsPerOp(), r)
	}
	slices.Sort(ratios)
	median := ratios[len(ratios)/2]
	t.Logf("FIGURE admit-warm/decode-floor ns/op ratio: median %.2f (min %.2f, max %.2f) over %d rounds; allocs/op %d vs %d; target <= %.1f",
		median, ratios[0], ratios[len(ratios)-1], rounds, warm.AllocsPerOp(), floor.AllocsPerOp(), target)
	if median > target {
		t.Errorf("AdmitWarm is %.2fx DecodeFloor, over the %.1fx target", median, target)
	}
}
