package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// Hostile reviews: the API caller writes the object, and the image's
// author writes what the registry serves. Whatever they write, a review
// answers before the API server's deadline, its work is bounded, and what
// the request kept from being judged is a violation, never "could not
// inspect, admitted". The assertions are on resources: the time an answer
// took against the review's deadline (plus a small slack for answering),
// goroutines left behind, bytes allocated.

// slack is the time allowed past a review's budget for writing the answer.
// The API server waits the budget plus Budget's margin (1 s) in these
// tests, so an answer within the slack is always in time.
const slack = 500 * time.Millisecond

// inspectFunc is an Inspector made of a function.
type inspectFunc func(ctx context.Context, r registry.Request) (*registry.Inspection, error)

func (f inspectFunc) Inspect(ctx context.Context, r registry.Request) (*registry.Inspection, error) {
	return f(ctx, r)
}

// plainFacts answers every reference with facts that break no rule.
func plainFacts(calls *atomic.Int64) inspectFunc {
	return func(_ context.Context, r registry.Request) (*registry.Inspection, error) {
		calls.Add(1)
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{{Reference: r.Reference}}}, nil
	}
}

// hostileHandler is a handler of the default policy (Enforce,
// onInspectionError Allow) with the given inspector and options.
func hostileHandler(t *testing.T, rd client.Reader, ins registry.Inspector, o Options) *Handler {
	t.Helper()
	o.Reader, o.Inspector = rd, ins
	h, err := NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// answer is a review's answer as the API server reads it.
type answer struct {
	allowed bool
	message string
	took    time.Duration
}

// answerWithin posts body to h, as the API server would with the given
// timeout, and fails the test when no answer comes within budget plus
// slack. It does not wait longer: a handler that overruns is left behind.
func answerWithin(t *testing.T, h http.Handler, body []byte, apiTimeout, budget time.Duration) answer {
	t.Helper()
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		w := serveWithin(h, body, apiTimeout)
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil || ar.Response == nil {
			done <- answer{message: fmt.Sprintf("status %d, unreadable answer %q", w.Code, w.Body.String()), took: time.Since(start)}
			return
		}
		r := answer{allowed: ar.Response.Allowed, took: time.Since(start)}
		if ar.Response.Result != nil {
			r.message = ar.Response.Result.Message
		}
		done <- r
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(budget + slack):
		t.Fatalf("no answer %v after the review's %v budget", slack, budget)
		return answer{}
	}
}

// A Pod names 40 images on a registry that never answers, then one fat
// image on a healthy registry. Inspections are started fairly across
// registries, so the fat image is fetched and judged within the budget
// and the Pod is denied for it; the 40 hanging ones cannot push it out of
// the budget. Three reviews run at once, each on its own handler (with 4
// inspections at a time), so that the old scheduling (the first 4 of the
// 41 in map order) could not pass by luck. Every review answers within its
// 2 s budget, and nothing is left running afterwards.
func TestHostileStarvation(t *testing.T) {
	const reviews, hanging = 3, 40
	base := runtime.NumGoroutine()
	func() {
		healthy := newBenchRegistry(t, 0)
		fat := healthy.push(t, "team/fat:1", fixtureImage(t, "golang-1.24.4-bookworm.json", "starved"))
		hangSrv, hangHost, hangRequests := hangingRegistry(t)
		images := make([]string, 0, hanging+1)
		for i := range hanging {
			images = append(images, fmt.Sprintf("%s/slow/img-%d:1", hangHost, i))
		}
		images = append(images, fat)
		p := benchPolicy(healthy.Host)
		p.Spec.Registries.Insecure = append(p.Spec.Registries.Insecure, hangHost)
		body := podReview(t, "starved", images)

		var remotes []*registry.Remote
		var wg sync.WaitGroup
		answers := make([]answer, reviews)
		for i := range reviews {
			remote, err := registry.NewRemote(registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			remotes = append(remotes, remote)
			h := hostileHandler(t, benchReader(t, p, false), remote, Options{Concurrency: 4})
			wg.Go(func() { answers[i] = answerWithin(t, serving(h, true), body, 3*time.Second, 2*time.Second) })
		}
		wg.Wait()
		for i, a := range answers {
			if a.allowed {
				t.Errorf("review %d: the fat image was admitted (took %v)", i, a.took)
			}
			if !strings.Contains(a.message, fat) || !strings.Contains(a.message, "["+policy.RuleToolchainGo+"]") {
				t.Errorf("review %d: the fat image was not judged:\n%s", i, a.message)
			}
		}
		t.Logf("FIGURE starvation: %d reviews of %d hanging images + 1 fat one answered in %v, %v, %v; the hanging registry saw %d requests",
			reviews, hanging, answers[0].took.Round(time.Millisecond), answers[1].took.Round(time.Millisecond), answers[2].took.Round(time.Millisecond), hangRequests.Load())
		for _, r := range remotes {
			r.Close()
		}
		hangSrv.Close()
		healthy.Server.Close()
	}()
	if err := devcluster.WaitGoroutines(base, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// manyImagesPod is a Pod with one container per reference.
func manyImagesPod(t *testing.T, refs []string) []byte {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "many", Namespace: "team"}}
	for i, ref := range refs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: ref})
	}
	return raw(t, p, "v1", "Pod")
}

// policiesReader serves the policies and the "team" namespace as the API
// server would store them.
func policiesReader(t testing.TB, policies ...*v1alpha1.SlimImagePolicy) client.Reader {
	t.Helper()
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}})
	for _, p := range policies {
		b = b.WithObjects(p)
	}
	return b.Build()
}

// A review may name at most 64 distinct images from at most 16
// registries. Beyond either bound nothing is fetched and every policy
// reports the violation with the bound's reason; the work done is bounded
// by the object's size, however many images it names.
func TestHostileTooManyImages(t *testing.T) {
	refs := func(n int, ref func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = ref(i)
		}
		return out
	}
	cases := []struct {
		name   string
		refs   []string
		reason string // empty: admitted
	}{
		{"64 distinct images", refs(64, func(i int) string { return fmt.Sprintf("ghcr.io/org/app-%d:1", i) }), ""},
		{"65 distinct images", refs(65, func(i int) string { return fmt.Sprintf("ghcr.io/org/app-%d:1", i) }), "TooManyImages"},
		{"10000 distinct images", refs(10000, func(i int) string { return fmt.Sprintf("ghcr.io/org/app-%d:1", i) }), "TooManyImages"},
		{"500 containers of one image", refs(500, func(int) string { return "ghcr.io/org/app:1" }), ""},
		{"16 registries", refs(16, func(i int) string { return fmt.Sprintf("r%d.example.test/app:1", i) }), ""},
		{"17 registries", refs(17, func(i int) string { return fmt.Sprintf("r%d.example.test/app:1", i) }), "TooManyRegistries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int64
			audit := clusterWide()
			audit.Name, audit.Spec.Mode = "audit", v1alpha1.ModeAudit
			h := hostileHandler(t, policiesReader(t, clusterWide(), audit), plainFacts(&calls), Options{})
			obj := manyImagesPod(t, c.refs)
			var resp admission.Response
			allocated := allocatedBy(func() {
				resp = h.Handle(context.Background(), request(admissionv1.Create, "", "Pod", "", obj, nil))
			})
			t.Logf("%d bytes of object, %d bytes allocated, %d inspections", len(obj), allocated, calls.Load())
			if c.reason == "" {
				if !resp.Allowed {
					t.Fatalf("denied: %v", resp.Result)
				}
				return
			}
			if resp.Allowed {
				t.Fatalf("admitted; want a violation for %s", c.reason)
			}
			// Each policy reports it in its own mode: the Enforce one
			// denies, the Audit one is outranked on the same image.
			for _, want := range []string{"(" + c.reason + ")", "[inspection.invalid]", "[all]"} {
				if !strings.Contains(resp.Result.Message, want) {
					t.Errorf("denial lacks %q:\n%s", want, resp.Result.Message)
				}
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("%d images inspected past the bound, want none", n)
			}
			// Decoding (a 408-byte corev1.Container per image of about
			// 65 bytes of JSON), listing and counting the images cost
			// under 32 times the object's size (17 times when this was
			// written); nothing else may grow with the image count.
			if limit := uint64(32*len(obj)) + 1<<20; allocated > limit {
				t.Errorf("%d bytes allocated for a %d-byte object, want at most %d", allocated, len(obj), limit)
			}
		})
	}
}

// allocatedBy returns the bytes f allocates (runtime.MemStats.TotalAlloc),
// which bound how far it can grow the heap.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The image's author writes its history: thousands of maximal lines
// (64 KiB each, the longest the analysis reads) take minutes to analyse.
// Evaluation stops at the review's deadline, and the cut result is a
// violation under Enforce, never an admission: the review answers within
// its budget whatever the config holds.
func TestHostileEvaluationStopsAtDeadline(t *testing.T) {
	line := "RUN /bin/sh -c " + strings.Repeat("apt-get install -y gcc make && ", (64<<10)/31)
	history := make([]image.HistoryEntry, 3000)
	for i := range history {
		history[i] = image.HistoryEntry{Index: i, CreatedBy: line, Layer: image.NoLayer}
	}
	ins := inspectFunc(func(_ context.Context, r registry.Request) (*registry.Inspection, error) {
		f := &image.Facts{Reference: r.Reference, Digest: "sha256:" + strings.Repeat("ab", 32), History: history}
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{f}}, nil
	})
	base := runtime.NumGoroutine()
	h := hostileHandler(t, benchReader(t, clusterWide(), false), ins, Options{})
	body := podReview(t, "slow-history", []string{"ghcr.io/org/slow:1"})
	a := answerWithin(t, serving(h, true), body, 2*time.Second, time.Second)
	t.Logf("answered in %v", a.took)
	if a.allowed {
		t.Fatal("an image whose evaluation was cut at the deadline was admitted")
	}
	if !strings.Contains(a.message, "[inspection.invalid]") || !strings.Contains(a.message, "deadline") {
		t.Errorf("the denial does not say the evaluation was cut:\n%s", a.message)
	}
	if err := devcluster.WaitGoroutines(base, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// The rule for a budget that runs out (see judge), under Enforce and
// onInspectionError Allow, with 4 inspections at a time: a registry that
// does not answer is availability, and admits; images that never got
// their turn because the request's own images on their registry held
// every slot are the request's doing, and deny; another registry's images
// are not held up by it; nothing starts once the budget is spent; and an
// inspector that overruns the deadline is not waited for.
func TestHostileBudgetRule(t *testing.T) {
	const budget = 300 * time.Millisecond
	release := make(chan struct{})
	var mu sync.Mutex
	var asked []string
	ins := inspectFunc(func(ctx context.Context, r registry.Request) (*registry.Inspection, error) {
		mu.Lock()
		asked = append(asked, r.Reference)
		mu.Unlock()
		switch registryOf(parseReference(r.Reference)) {
		case "hang.example.test":
			<-ctx.Done()
			return nil, &registry.InspectionError{Reference: r.Reference, Reason: registry.ReasonTimeout, Err: ctx.Err()}
		case "stuck.example.test":
			<-release // ignores the deadline
			return nil, &registry.InspectionError{Reference: r.Reference, Reason: registry.ReasonTimeout, Err: ctx.Err()}
		}
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{{Reference: r.Reference}}}, nil
	})
	on := func(host string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s/app-%d:1", host, i)
		}
		return out
	}
	cases := []struct {
		name     string
		refs     []string
		done     bool     // the context is done before the review
		reason   string   // the violation; empty: admitted
		mustAsk  []string // references that must have been inspected
		askedMax int
	}{
		{"one image on a registry that does not answer", on("hang.example.test", 1), false, "", nil, 1},
		{"images starved by their own registry's", on("hang.example.test", 8), false, ReasonBudgetExhausted, nil, 4},
		{"another registry's images get their share", append(on("hang.example.test", 8), on("ok.example.test", 3)...), false,
			ReasonBudgetExhausted, on("ok.example.test", 3), 7},
		{"nothing starts once the budget is spent", on("ok.example.test", 2), true, ReasonBudgetExhausted, nil, 0},
		{"an inspector that overruns the deadline", on("stuck.example.test", 1), false, "", nil, 1},
	}
	base := runtime.NumGoroutine()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			asked = nil
			mu.Unlock()
			h := hostileHandler(t, policiesReader(t, clusterWide()), ins, Options{Concurrency: 4})
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			if c.done {
				cancel()
			}
			start := time.Now()
			resp := h.Handle(ctx, request(admissionv1.Create, "", "Pod", "", manyImagesPod(t, c.refs), nil))
			if took := time.Since(start); took > budget+lateAnswers+slack {
				t.Errorf("answered %v after the %v budget", took-budget, budget)
			}
			mu.Lock()
			got := slices.Clone(asked)
			mu.Unlock()
			if len(got) > c.askedMax {
				t.Errorf("%d inspections started, want at most %d: %q", len(got), c.askedMax, got)
			}
			for _, ref := range c.mustAsk {
				if !slices.Contains(got, ref) {
					t.Errorf("%s was never inspected", ref)
				}
			}
			if c.reason == "" {
				if !resp.Allowed {
					t.Errorf("denied: %s", resp.Result.Message)
				}
				return
			}
			if resp.Allowed || !strings.Contains(resp.Result.Message, "("+c.reason+")") || !strings.Contains(resp.Result.Message, "[inspection.invalid]") {
				t.Errorf("allowed = %v, want a denial for %s: %v", resp.Allowed, c.reason, resp.Result)
			}
			for _, ref := range c.mustAsk {
				if strings.Contains(resp.Result.Message, ref+" ") {
					t.Errorf("%s, which was judged, is named in the denial:\n%s", ref, resp.Result.Message)
				}
			}
		})
	}
	close(release)
	if err := devcluster.WaitGoroutines(base, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// decisions records what the handler hands to the recorder.
type decisions struct {
	mu  sync.Mutex
	all []events.Decision
}

func (d *decisions) Record(_ context.Context, x events.Decision) {
	d.mu.Lock()
	d.all = append(d.all, x)
	d.mu.Unlock()
}

// A Pod of 10,000 containers naming one fat image, or of 64 containers
// naming fat images by 8 KiB references, gets an answer of bounded size:
// the denial, the warnings and the Event notes speak of 20 images one by
// one, show references cut to 256 bytes and count the rest, instead of
// growing many times larger than the object (an 11.9 MB denial for the
// 600 kB Pod before the cap).
func TestHostileAnswerIsBounded(t *testing.T) {
	ins := inspectFunc(func(_ context.Context, r registry.Request) (*registry.Inspection, error) {
		f := &image.Facts{Reference: r.Reference, Digest: "sha256:" + strings.Repeat("ef", 32),
			History: []image.HistoryEntry{{CreatedBy: "RUN /bin/sh -c apt-get install -y gcc golang-go openjdk-17-jdk maven", Layer: image.NoLayer}}}
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{f}}, nil
	})
	same := make([]string, 10000)
	for i := range same {
		same[i] = "ghcr.io/org/fat:1"
	}
	long := make([]string, DefaultMaxImages)
	for i := range long {
		long[i] = fmt.Sprintf("ghcr.io/org/%s:%d", strings.Repeat("fat", 8<<10/3), i)
	}
	const limit = 64 << 10
	for _, pod := range []struct {
		name string
		refs []string
	}{{"10000 containers of one image", same}, {"64 images of 8 KiB references", long}} {
		obj := manyImagesPod(t, pod.refs)
		for _, mode := range []v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn} {
			t.Run(pod.name+"/"+string(mode), func(t *testing.T) {
				p := clusterWide()
				p.Spec.Mode = mode
				rec := &decisions{}
				h := hostileHandler(t, policiesReader(t, p), ins, Options{Recorder: rec})
				var resp admission.Response
				allocated := allocatedBy(func() {
					resp = h.Handle(context.Background(), request(admissionv1.Create, "", "Pod", "", obj, nil))
				})
				size := len(strings.Join(resp.Warnings, ""))
				if resp.Result != nil {
					size += len(resp.Result.Message)
				}
				t.Logf("%d-byte object: %d bytes of answer, %d warnings, %d bytes allocated", len(obj), size, len(resp.Warnings), allocated)
				if size > limit || len(resp.Warnings) > maxListed+1 {
					t.Errorf("answer of %d bytes and %d warnings, want at most %d bytes and %d warnings", size, len(resp.Warnings), limit, maxListed+1)
				}
				more := fmt.Sprintf("and %d more", len(pod.refs)-maxListed)
				if mode == v1alpha1.ModeEnforce && (resp.Allowed || !strings.Contains(resp.Result.Message, more+" refused images")) {
					t.Errorf("the denial does not count the images it does not list: %v", resp.Result)
				}
				if mode == v1alpha1.ModeWarn && !strings.Contains(resp.Warnings[len(resp.Warnings)-1], fmt.Sprintf("more warnings on %d images", len(pod.refs)-maxListed/4)) {
					t.Errorf("the warnings do not count those left out: %q", resp.Warnings[len(resp.Warnings)-1])
				}
				for _, d := range rec.all {
					if len(d.Note) > limit {
						t.Errorf("Event note of %d bytes", len(d.Note))
					}
					if len(d.Images) > DefaultMaxImages {
						t.Errorf("%d image Events for one decision", len(d.Images))
					}
					for _, im := range d.Images {
						if len(im.Note) > limit {
							t.Errorf("Event note of %d bytes about %.40s", len(im.Note), im.Image)
						}
					}
				}
				// Decoding and listing cost under 32 times the object's
				// size (TestHostileTooManyImages); judging, deciding and
				// recording add a few bytes per byte (35.5 times in all
				// when exceptions and owner standing joined the path,
				// measured alone in a fresh process); a cost that grows
				// faster than the object exceeds 40 times at once.
				if bound := uint64(40*len(obj)) + 1<<20; allocated > bound {
					t.Errorf("%d bytes allocated for a %d-byte object, want at most %d", allocated, len(obj), bound)
				}
			})
		}
	}
}

// reviewSeeds are AdmissionReviews of every kind the webhook judges, with
// every kind of image slot, as CREATE, as UPDATE with an old object, and
// for the ephemeralcontainers subresource.
func reviewSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	meta := metav1.ObjectMeta{Name: "x", Namespace: "team", Labels: map[string]string{"app": "x"}}
	tmpl := template()
	objs := []struct {
		obj         k8sruntime.Object
		group, kind string
		apiVersion  string
	}{
		{&corev1.Pod{ObjectMeta: meta, Spec: podSpec()}, "", "Pod", "v1"},
		{&corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Template: &tmpl}}, "", "ReplicationController", "v1"},
		{&appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}}, "apps", "Deployment", "apps/v1"},
		{&appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}, "apps", "ReplicaSet", "apps/v1"},
		{&appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}}, "apps", "StatefulSet", "apps/v1"},
		{&appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}}, "apps", "DaemonSet", "apps/v1"},
		{&batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}}, "batch", "Job", "batch/v1"},
		{&batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}, "batch", "CronJob", "batch/v1"},
	}
	encode := func(ar *admissionv1.AdmissionReview) []byte {
		b, err := json.Marshal(ar)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	var out [][]byte
	for _, o := range objs {
		b := raw(tb, o.obj, o.apiVersion, o.kind)
		ar := &admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: "u", Operation: admissionv1.Create, Namespace: "team",
				Kind:   metav1.GroupVersionKind{Group: o.group, Version: "v1", Kind: o.kind},
				Object: k8sruntime.RawExtension{Raw: b},
			},
		}
		out = append(out, encode(ar))
		// The old object names no images: all of the new one's are new.
		old := fmt.Appendf(nil, `{"apiVersion":%q,"kind":%q,"metadata":{"name":"x","namespace":"team"}}`, o.apiVersion, o.kind)
		ar.Request.Operation, ar.Request.OldObject = admissionv1.Update, k8sruntime.RawExtension{Raw: old}
		out = append(out, encode(ar))
		if o.kind == "Pod" {
			ar.Request.SubResource = "ephemeralcontainers"
			out = append(out, encode(ar))
		}
	}
	return append(out, []byte(`{}`), []byte(`{"request":{"kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"kind":"Pod","apiVersion":"v1"}}}`))
}

// FuzzAdmissionReview posts any bytes as an AdmissionReview, as the API
// server would (through controller-runtime's decoding, panics not
// recovered), and decodes the request's objects as the handler does.
// Whatever the bytes, nothing panics and the output is bounded by the
// input: no more images listed than bytes, no reference longer than the
// input, at most DefaultMaxImages inspections, and an answer at most 64 KiB
// longer than the request.
func FuzzAdmissionReview(f *testing.F) {
	for _, seed := range reviewSeeds(f) {
		f.Add(seed)
	}
	var asked, longest atomic.Int64
	ins := inspectFunc(func(_ context.Context, r registry.Request) (*registry.Inspection, error) {
		asked.Add(1)
		if n := int64(len(r.Reference)); n > longest.Load() {
			longest.Store(n)
		}
		// A fat image, so that denials are written too.
		facts := &image.Facts{Reference: r.Reference, History: []image.HistoryEntry{{CreatedBy: "RUN /bin/sh -c apt-get install -y gcc", Layer: image.NoLayer}}}
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{facts}}, nil
	})
	h, err := NewHandler(Options{Reader: policiesReader(f, clusterWide()), Inspector: ins})
	if err != nil {
		f.Fatal(err)
	}
	noRecover := false
	srv := &webhook.Admission{Handler: h, RecoverPanic: &noRecover}
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		asked.Store(0)
		longest.Store(0)
		w := serve(srv, body)
		if n := asked.Load(); n > DefaultMaxImages {
			t.Fatalf("%d inspections for one review", n)
		}
		if n := longest.Load(); n > int64(len(body)) {
			t.Fatalf("a %d-byte reference inspected from a %d-byte review", n, len(body))
		}
		if n := w.Body.Len(); n > len(body)+64<<10 {
			t.Fatalf("a %d-byte answer to a %d-byte review", n, len(body))
		}
		// The decoding path on its own: the review as the API server
		// sends it (JSON, or the YAML controller-runtime also reads).
		var ar admissionv1.AdmissionReview
		if yaml.Unmarshal(body, &ar) != nil || ar.Request == nil {
			return
		}
		gvk := schema.GroupVersionKind{Group: ar.Request.Kind.Group, Version: ar.Request.Kind.Version, Kind: ar.Request.Kind.Kind}
		for _, raw := range [][]byte{ar.Request.Object.Raw, ar.Request.OldObject.Raw} {
			wl, err := d.DecodeAs(raw, gvk)
			if err != nil {
				continue
			}
			imgs := Images(wl.Spec, wl.Path)
			if len(imgs) > len(body) {
				t.Fatalf("%d images listed from a %d-byte review", len(imgs), len(body))
			}
			for _, img := range imgs {
				if len(img.Reference) > len(body) {
					t.Fatalf("a %d-byte reference listed from a %d-byte review", len(img.Reference), len(body))
				}
			}
		}
	})
}
