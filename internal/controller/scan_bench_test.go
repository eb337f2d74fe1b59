package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// The fleet of BenchmarkFleetScan.
const (
	benchNamespaces   = 20
	benchWorkloads    = 2000 // Deployments, each with a ReplicaSet
	benchPodsEach     = 5    // 10,000 Pods
	benchImages       = 500
	benchRegistries   = 10
	benchLatency      = 50 * time.Millisecond
	benchReviewers    = 4
	benchIdleReviews  = 5 * time.Second
	benchReviewBudget = 10 * time.Second
)

// memLister serves the fleet from memory (fleet.Lister).
type memLister struct{ byNS map[string][]client.Object }

func (l memLister) Namespaces(context.Context) ([]string, error) {
	var out []string
	for ns := range l.byNS {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out, nil
}

func (l memLister) Objects(_ context.Context, ns string) ([]client.Object, error) {
	return l.byNS[ns], nil
}

// memReader serves the policy and the namespaces (admission.Options.Reader).
type memReader struct{ policy *v1alpha1.SlimImagePolicy }

func (r memReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return fmt.Errorf("memReader cannot get %T", obj)
	}
	*ns = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Labels: map[string]string{corev1.LabelMetadataName: key.Name}}}
	return nil
}

func (r memReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	l, ok := list.(*v1alpha1.SlimImagePolicyList)
	if !ok {
		return fmt.Errorf("memReader cannot list %T", list)
	}
	l.Items = []v1alpha1.SlimImagePolicy{*r.policy.DeepCopy()}
	return nil
}

// BenchmarkFleetScan scans 10,000 Pods in 2,000 Deployments naming 500
// distinct images on 10 registries that answer each request 50 ms late,
// through the background lane at its defaults (5 requests/s per registry,
// 4 inspections at once), from a cold cache, while 4 clients keep sending
// Pod reviews that each ask an 11th registry what a tag names. It reports
// the scan's time, the registry requests per distinct digest by kind,
// the peak heap during the scan, and the reviews' p99 during the scan
// against the same reviews before it. Run it alone:
//
//	go test -run '^$' -bench BenchmarkFleetScan -benchtime 1x ./internal/controller/
func BenchmarkFleetScan(b *testing.B) {
	logf.SetLogger(logr.Discard())
	var regs []*devcluster.CountingRegistry
	for range benchRegistries + 1 {
		r := devcluster.StartCountingRegistry(nil, benchLatency)
		b.Cleanup(r.Close)
		regs = append(regs, r)
	}
	admReg := regs[benchRegistries]
	pol := policy.Default()
	pol.UID, pol.ResourceVersion, pol.Generation = "bench-policy", "1", 1
	pol.Spec.Registries.AllowPrivateNetworks = true
	for _, r := range regs {
		pol.Spec.Registries.Insecure = append(pol.Spec.Registries.Insecure, r.Host)
	}
	// The images: half built like a Go SDK app, half slim.
	refs := make([]string, benchImages)
	ids := make([]string, benchImages)
	for i := range benchImages {
		spec := devcluster.StaticApp()
		if i%2 == 0 {
			spec = devcluster.GoSDKApp()
		}
		spec.Env = append(spec.Env, fmt.Sprintf("IMAGE=%d", i)) // distinct digests
		img, err := spec.Build(512, 0)
		if err != nil {
			b.Fatal(err)
		}
		if refs[i], err = regs[i%benchRegistries].Push(fmt.Sprintf("app-%d:1", i), img); err != nil {
			b.Fatal(err)
		}
		ids[i] = imageID(b, refs[i], img)
	}
	admRef, err := admReg.Push("adm:1", mustImage(b))
	if err != nil {
		b.Fatal(err)
	}
	lister := fleetOf(refs, ids)

	for b.Loop() {
		for _, r := range regs {
			r.Reset()
		}
		remote, err := registry.NewRemote(registry.Options{Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		prio := &admission.Priority{}
		reader := memReader{policy: pol}
		scanJudge, err := admission.NewHandler(admission.Options{Reader: reader, Inspector: &BackgroundLane{Inspector: remote, Priority: prio}})
		if err != nil {
			b.Fatal(err)
		}
		reviewer, err := admission.NewHandler(admission.Options{Reader: reader, Inspector: remote})
		if err != nil {
			b.Fatal(err)
		}
		serve := prio.Wrap(admission.Budget{}.Wrap(&webhook.Admission{Handler: reviewer}))
		body := podReviewBody(b, admRef)

		// Warm the reviews' connections and transports, then measure them
		// idle.
		reviewFor(b, serve, body, func() { time.Sleep(time.Second) })
		idle := reviewFor(b, serve, body, func() { time.Sleep(benchIdleReviews) })
		var scanTime time.Duration
		var peak uint64
		var results []fleet.WorkloadResult
		during := reviewFor(b, serve, body, func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				start := time.Now()
				s := fleet.Scanner{Lister: lister, Judge: scanJudge}
				var scanned *fleet.Scanned
				if scanned, err = s.Scan(context.Background(), nil); err == nil {
					results = scanned.Workloads
				}
				scanTime = time.Since(start)
			}()
			peak = peakHeap(done)
		})
		if err != nil {
			b.Fatal(err)
		}
		remote.Close()
		byKind := map[string]int{}
		for _, r := range regs[:benchRegistries] {
			for k, n := range r.Counts() {
				byKind[k] += n
			}
		}
		judged, failed := 0, 0
		for _, w := range results {
			if w.Err != nil {
				failed++
			}
			judged += len(w.Images)
		}
		if len(results) != benchWorkloads || judged != benchWorkloads || failed != 0 {
			b.Fatalf("scan judged %d images of %d workloads (%d failed), want %d", judged, len(results), failed, benchWorkloads)
		}
		if byKind["manifest GET"] > benchImages || byKind["blob GET"] > benchImages {
			b.Errorf("registry requests %v: more than one manifest and one config per distinct digest (%d)", byKind, benchImages)
		}
		p99Idle, p99Scan := p99(idle), p99(during)
		b.ReportMetric(scanTime.Seconds(), "scan-s")
		b.ReportMetric(float64(byKind["manifest GET"])/benchImages, "manifestGETs/digest")
		b.ReportMetric(float64(byKind["blob GET"])/benchImages, "configGETs/digest")
		b.ReportMetric(float64(byKind["manifest HEAD"]+byKind["ping"]), "other-requests")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(p99Idle.Microseconds())/1000, "review-p99-idle-ms")
		b.ReportMetric(float64(p99Scan.Microseconds())/1000, "review-p99-scan-ms")
		b.ReportMetric(float64(p99Scan)/float64(p99Idle), "p99-ratio")
		b.Logf("scan %s; requests %v; peak heap %.0f MiB; reviews idle %d p99 %s, during the scan %d p99 %s",
			scanTime.Round(time.Millisecond), byKind, float64(peak)/(1<<20), len(idle), p99Idle, len(during), p99Scan)
	}
}

// fleetOf is the fleet: benchWorkloads Deployments across benchNamespaces,
// each with a ReplicaSet and benchPodsEach Pods running image i%500 at its
// digest.
func fleetOf(refs, ids []string) memLister {
	l := memLister{byNS: map[string][]client.Object{}}
	yes := true
	own := func(o client.Object) []metav1.OwnerReference {
		return []metav1.OwnerReference{{Name: o.GetName(), UID: o.GetUID(), Controller: &yes}}
	}
	for i := range benchWorkloads {
		ns := fmt.Sprintf("team-%02d", i%benchNamespaces)
		img := i % benchImages
		tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: refs[img]}}}}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint("app-", i), UID: types.UID(fmt.Sprint("d-", i))},
			Spec: appsv1.DeploymentSpec{Template: tmpl}}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: d.Name + "-1", UID: types.UID(fmt.Sprint("rs-", i)), OwnerReferences: own(d)},
			Spec: appsv1.ReplicaSetSpec{Template: tmpl}}
		l.byNS[ns] = append(l.byNS[ns], d, rs)
		for p := range benchPodsEach {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", rs.Name, p),
				UID: types.UID(fmt.Sprintf("p-%d-%d", i, p)), OwnerReferences: own(rs)}, Spec: tmpl.Spec}
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: refs[img], ImageID: ids[img]}}
			l.byNS[ns] = append(l.byNS[ns], pod)
		}
	}
	return l
}

func imageID(b *testing.B, ref string, img v1.Image) string {
	d, err := img.Digest()
	if err != nil {
		b.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	return r.Context().Name() + "@" + d.String()
}

func mustImage(b *testing.B) v1.Image {
	img, err := devcluster.StaticApp().Build(512, 0)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// podReviewBody is the AdmissionReview of a Pod CREATE naming image.
func podReviewBody(b *testing.B, image string) []byte {
	pod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-00", Name: "review"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "bench", Kind: metav1.GroupVersionKind(gvk),
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "team-00", Name: "review",
			Operation: admissionv1.Create, Object: k8sruntime.RawExtension{Raw: raw}}}
	out, err := json.Marshal(review)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// reviewFor runs benchReviewers clients sending the review until during
// returns, and returns every review's latency.
func reviewFor(b *testing.B, h http.Handler, body []byte, during func()) []time.Duration {
	stop := make(chan struct{})
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for range benchReviewers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := httptest.NewRequest(http.MethodPost, "/validate-pods?timeout=10s", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, req)
				d := time.Since(start)
				if w.Code != http.StatusOK || d > benchReviewBudget {
					b.Errorf("review answered %d in %s", w.Code, d)
				}
				mu.Lock()
				out = append(out, d)
				mu.Unlock()
			}
		})
	}
	during()
	close(stop)
	wg.Wait()
	return out
}

// peakHeap samples the heap in use until done closes and returns its
// peak.
func peakHeap(done <-chan struct{}) uint64 {
	var peak uint64
	var ms runtime.MemStats
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}
