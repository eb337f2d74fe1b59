package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// Fixtures shared by the tests and the benchmarks of this package.

// benchRegistry is devcluster's counting registry, stopped with the test.
type benchRegistry struct{ *devcluster.CountingRegistry }

// newBenchRegistry starts a counting registry that answers each counted
// request latency late.
func newBenchRegistry(tb testing.TB, latency time.Duration) *benchRegistry {
	tb.Helper()
	br := &benchRegistry{devcluster.StartCountingRegistry(nil, latency)}
	tb.Cleanup(br.Close)
	return br
}

// snapshot returns the requests counted so far, by kind, and their total.
func (br *benchRegistry) snapshot() (map[string]int, int) {
	counts, total := br.Counts(), 0
	for _, n := range counts {
		total += n
	}
	return counts, total
}

// push writes img as host/repoTag, uncounted, and returns the reference.
func (br *benchRegistry) push(tb testing.TB, repoTag string, img v1.Image) string {
	tb.Helper()
	ref, err := br.Push(repoTag, img)
	if err != nil {
		tb.Fatal(err)
	}
	return ref
}

// hangingRegistry never answers: each request waits until its client gives
// up (or the test ends).
func hangingRegistry(t *testing.T) (srv *httptest.Server, host string, requests *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	requests = &atomic.Int64{}
	srv = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv, strings.TrimPrefix(srv.URL, "http://"), requests
}

// fixtureImage builds an image whose config is a real one from
// pkg/policy/testdata/images, with one small random layer per layer the
// config's history adds. salt, when not empty, is added to the env so that
// each call yields a distinct image.
func fixtureImage(tb testing.TB, file, salt string) v1.Image {
	tb.Helper()
	cfg, err := devcluster.ReadFixtureConfig("../policy/testdata/images/" + file)
	if err != nil {
		tb.Fatal(err)
	}
	if salt != "" {
		cfg.Config.Env = append(cfg.Config.Env, "BUILD_ID="+salt)
	}
	img, err := devcluster.ImageFromConfig(cfg, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// benchPolicy is the default policy, allowed to reach the loopback
// registry over plain HTTP (as test/e2e configures it).
func benchPolicy(host string) *v1alpha1.SlimImagePolicy {
	p := policy.Default()
	p.Spec.Registries.AllowPrivateNetworks = true
	p.Spec.Registries.Insecure = []string{host}
	return p
}

// cacheReader serves policies and namespaces from memory and deep-copies
// them on every read, as the manager's informer cache does. The fake client
// round-trips objects through JSON instead, which would charge slimgate for
// a cost the real server does not pay.
type cacheReader struct {
	policies   []v1alpha1.SlimImagePolicy
	namespaces map[string]*corev1.Namespace
}

func (c *cacheReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return fmt.Errorf("cacheReader cannot get %T", obj)
	}
	found, ok := c.namespaces[key.Name]
	if !ok {
		return fmt.Errorf("namespace %s not in the benchmark cache", key.Name)
	}
	found.DeepCopyInto(ns)
	return nil
}

func (c *cacheReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	l, ok := list.(*v1alpha1.SlimImagePolicyList)
	if !ok {
		return fmt.Errorf("cacheReader cannot list %T", list)
	}
	l.Items = make([]v1alpha1.SlimImagePolicy, len(c.policies))
	for i := range c.policies {
		c.policies[i].DeepCopyInto(&l.Items[i])
	}
	return nil
}

// benchReader returns the policy and the "team" namespace, either from the
// cache-like reader or from controller-runtime's fake client.
func benchReader(tb testing.TB, p *v1alpha1.SlimImagePolicy, useFake bool) client.Reader {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{corev1.LabelMetadataName: "team"}}}
	if !useFake {
		// Objects from the informer cache always carry these.
		cached := p.DeepCopy()
		cached.UID, cached.ResourceVersion, cached.Generation = "0c7d4d38-2f6e-4a8e-9d6f-6c1f3a0e5b21", "4711", 1
		return &cacheReader{policies: []v1alpha1.SlimImagePolicy{*cached}, namespaces: map[string]*corev1.Namespace{"team": ns}}
	}
	s, err := devcluster.NewScheme()
	if err != nil {
		tb.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(ns, p).Build()
}

// benchHandler is the real handler: a registry.Remote, a decision recorder
// counting into its own Prometheus registry, and the given concurrency.
func benchHandler(tb testing.TB, rd client.Reader, concurrency int) (*Handler, *registry.Remote) {
	tb.Helper()
	remote, err := registry.NewRemote(registry.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(remote.Close)
	rec, err := events.NewRecorder(events.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := NewHandler(Options{Reader: rd, Inspector: remote, Recorder: rec, Concurrency: concurrency})
	if err != nil {
		tb.Fatal(err)
	}
	return h, remote
}

// podReview is the AdmissionReview of a CREATE of a Pod with one container
// per image.
func podReview(tb testing.TB, podName string, images []string) []byte {
	tb.Helper()
	var containers []corev1.Container
	for i, img := range images {
		containers = append(containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: "team"},
		Spec:       corev1.PodSpec{Containers: containers},
	}
	return reviewOf(tb, p, "", "Pod", "pods")
}

func reviewOf(tb testing.TB, obj runtime.Object, group, kind, resourceName string) []byte {
	tb.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		tb.Fatal(err)
	}
	version := "v1"
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "705ab4f5-6393-11e8-b7cc-42010a800002",
			Kind:      metav1.GroupVersionKind{Group: group, Version: version, Kind: kind},
			Resource:  metav1.GroupVersionResource{Group: group, Version: version, Resource: resourceName},
			Namespace: "team",
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "system:serviceaccount:ci:deployer", Groups: []string{"system:serviceaccounts", "system:authenticated"}},
			Object:    runtime.RawExtension{Raw: raw},
			Options:   runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-client-side-apply"}`)},
		},
	}
	b, err := json.Marshal(ar)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// serving wraps a handler the way cmd/webhook/app registers it, logging
// through controller-runtime's global logger as the binary does (TestMain
// points it at binaryLogger).
func serving(h admission.Handler, budget bool) http.Handler {
	var out http.Handler = &webhook.Admission{Handler: h}
	if budget {
		out = Budget{}.Wrap(out)
	}
	return out
}

// serve posts body to h as the API server would with its default timeout.
func serve(h http.Handler, body []byte) *httptest.ResponseRecorder {
	return serveWithin(h, body, 10*time.Second)
}

// serveWithin posts body to h as the API server would with this timeout.
func serveWithin(h http.Handler, body []byte, apiTimeout time.Duration) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/validate-workloads?timeout="+apiTimeout.String(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// allowedAnswer is how an allowed answer reads; benchmark loops check for
// it rather than decoding every answer.
var allowedAnswer = []byte(`"allowed":true`)

// answeredAllowed reports whether w, an answer of serve, allows the review.
func answeredAllowed(w *httptest.ResponseRecorder) bool {
	return w.Code == http.StatusOK && bytes.Contains(w.Body.Bytes(), allowedAnswer)
}
