package admission

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/exception"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/registry"
)

var (
	judgedDigest = "sha256:" + strings.Repeat("a", 64)
	otherDigest  = "sha256:" + strings.Repeat("b", 64)
)

// exceptionCase is a handler whose one policy (Enforce, requireDigests:
// every tag is a finding, reference.digest) judges images whose manifest
// digest is judgedDigest, with a clock the test moves.
type exceptionCase struct {
	h    *Handler
	now  time.Time
	recs *decisions
}

// objectReader is a fake client holding objs.
func objectReader(t *testing.T, objs ...client.Object) client.Reader {
	t.Helper()
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

func newExceptionCase(t *testing.T, rules v1alpha1.ExceptionRules, objs ...client.Object) *exceptionCase {
	t.Helper()
	pol := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "pinned"},
		Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce, RequireDigests: true, Exceptions: rules}}
	objs = append(objs, pol,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"exceptions": "yes"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
	c := &exceptionCase{now: created, recs: &decisions{}}
	ins := inspectFunc(func(_ context.Context, r registry.Request) (*registry.Inspection, error) {
		return &registry.Inspection{Reference: r.Reference, Images: []*image.Facts{{Reference: r.Reference, Digest: judgedDigest}}}, nil
	})
	h, err := NewHandler(Options{Reader: objectReader(t, objs...), Inspector: ins, Recorder: c.recs, Now: func() time.Time { return c.now }})
	if err != nil {
		t.Fatal(err)
	}
	c.h = h
	return c
}

// created is when the tests' exceptions were created.
var created = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// sie is an exception in namespace "team", created at created and
// lasting lasts, of every policy, for the reference.* rules.
func sie(name string, lasts time.Duration, spec v1alpha1.SlimImageExceptionSpec) *v1alpha1.SlimImageException {
	spec.Policies, spec.Rules = []string{"*"}, []string{"reference.*"}
	spec.Reason, spec.Expires = "vendor image, fixed next quarter", metav1.NewTime(created.Add(lasts))
	return &v1alpha1.SlimImageException{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name,
		CreationTimestamp: metav1.NewTime(created)}, Spec: spec}
}

// review posts the CREATE of a Deployment "web" in ns, whose Pods run
// vendor:1 in container "app".
func (c *exceptionCase) review(t *testing.T, ns string) (allowed bool, warnings []string, message string) {
	t.Helper()
	c.recs.all = nil
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "vendor:1"}}}}}}
	req := request(admissionv1.Create, "apps", "Deployment", "", raw(t, d, "apps/v1", "Deployment"), nil)
	req.Namespace = ns
	resp := c.h.Handle(context.Background(), req)
	if resp.Result != nil && resp.Result.Code == http.StatusInternalServerError {
		t.Fatalf("review failed: %s", resp.Result.Message)
	}
	if resp.Result != nil {
		message = resp.Result.Message
	}
	return resp.Allowed, resp.Warnings, message
}

// An exception admits what its policy found, records ImageExcepted with
// its name, reason and expiry, warns when it expires within a week, and
// stops the moment the clock passes its expires.
func TestExceptionAdmitsUntilExpiry(t *testing.T) {
	c := newExceptionCase(t, v1alpha1.ExceptionRules{},
		sie("vendor", 2*24*time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"docker.io/library/vendor:*"}}))

	allowed, warnings, msg := c.review(t, "team")
	if !allowed {
		t.Fatalf("denied under an exception: %s", msg)
	}
	if len(c.recs.all) != 1 || c.recs.all[0].Reason != events.ReasonExcepted {
		t.Fatalf("decisions %+v, want one %s", c.recs.all, events.ReasonExcepted)
	}
	note := c.recs.all[0].Notes()[0]
	for _, want := range []string{"SlimImageException vendor", "vendor image, fixed next quarter", "2025-06-03T12:00:00Z", "reference.digest"} {
		if !strings.Contains(note.Note, want) {
			t.Errorf("Event note does not mention %q:\n%s", want, note.Note)
		}
	}
	if note.Reason != events.ReasonExcepted || note.Image != "vendor:1" {
		t.Errorf("Event %+v, want %s about vendor:1", note, events.ReasonExcepted)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "exception vendor expires in 48h0m0s") || len(warnings[0]) >= MaxWarning {
		t.Errorf("warnings %q, want one short one that the exception expires in 48h", warnings)
	}

	c.now = created.Add(2*24*time.Hour - time.Second)
	if allowed, _, _ := c.review(t, "team"); !allowed {
		t.Fatal("denied a second before expiry")
	}
	c.now = created.Add(2 * 24 * time.Hour)
	allowed, warnings, msg = c.review(t, "team")
	if allowed || !strings.Contains(msg, "reference.digest") {
		t.Fatalf("at expiry: allowed %v, %q; want denied for reference.digest", allowed, msg)
	}
	if len(warnings) != 0 || c.recs.all[0].Reason != events.ReasonRejected {
		t.Errorf("an expired exception still speaks: warnings %q, reason %s", warnings, c.recs.all[0].Reason)
	}
}

// No warning for an exception with more than a week left.
func TestExceptionNotExpiringHasNoWarning(t *testing.T) {
	c := newExceptionCase(t, v1alpha1.ExceptionRules{},
		sie("vendor", 30*24*time.Hour, v1alpha1.SlimImageExceptionSpec{Digests: []string{judgedDigest}}))
	if allowed, warnings, msg := c.review(t, "team"); !allowed || len(warnings) != 0 {
		t.Fatalf("allowed %v (%s), warnings %q; want admitted without warnings", allowed, msg, warnings)
	}
}

// What does not apply: an exception of another namespace, of another
// digest (a new push to the same tag), of another workload, one the
// policy does not allow, in a namespace the policy does not select for
// exceptions, or longer than the policy's maxDuration.
func TestExceptionScope(t *testing.T) {
	no := false
	day := &metav1.Duration{Duration: 24 * time.Hour}
	all := []string{"*"}
	cases := []struct {
		name  string
		rules v1alpha1.ExceptionRules
		exc   *v1alpha1.SlimImageException
		ns    string
		want  bool
	}{
		{"control: digest in the namespace", v1alpha1.ExceptionRules{}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Digests: []string{judgedDigest}}), "team", true},
		{"another namespace", v1alpha1.ExceptionRules{}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all}), "other", false},
		{"another digest", v1alpha1.ExceptionRules{}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Digests: []string{otherDigest}}), "team", false},
		{"control: the workload", v1alpha1.ExceptionRules{}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all,
			Workloads: []v1alpha1.ExceptionWorkload{{Kind: "Deployment", Name: "web"}}}), "team", true},
		{"another workload", v1alpha1.ExceptionRules{}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all,
			Workloads: []v1alpha1.ExceptionWorkload{{Kind: "Deployment", Name: "api"}}}), "team", false},
		{"another container", v1alpha1.ExceptionRules{}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all,
			Containers: []string{"sidecar"}}), "team", false},
		{"policy allows none", v1alpha1.ExceptionRules{Allowed: &no}, sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all}), "team", false},
		{"control: namespace selected for exceptions", v1alpha1.ExceptionRules{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"exceptions": "yes"}}},
			sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all}), "team", true},
		{"namespace not selected for exceptions", v1alpha1.ExceptionRules{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"exceptions": "no"}}},
			sie("e", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all}), "team", false},
		{"longer than maxDuration", v1alpha1.ExceptionRules{MaxDuration: day}, sie("e", 25*time.Hour, v1alpha1.SlimImageExceptionSpec{Images: all}), "team", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newExceptionCase(t, tc.rules, tc.exc)
			allowed, _, msg := c.review(t, tc.ns)
			if allowed != tc.want {
				t.Fatalf("allowed = %v, want %v (%s)", allowed, tc.want, msg)
			}
		})
	}
}

// A review considers at most exception.MaxPerNamespace exceptions, the
// first by name: one that is left out does not apply.
func TestExceptionsPerNamespaceBounded(t *testing.T) {
	var objs []client.Object
	for i := range 64 {
		objs = append(objs, sie(fmt.Sprintf("a%02d", i), time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"nothing/*"}}))
	}
	objs = append(objs, sie("zz-vendor", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	if allowed, _, _ := newExceptionCase(t, v1alpha1.ExceptionRules{}, objs...).review(t, "team"); allowed {
		t.Error("the 65th exception by name applied")
	}
	if allowed, _, _ := newExceptionCase(t, v1alpha1.ExceptionRules{}, objs[1:]...).review(t, "team"); !allowed {
		t.Error("the 64th exception by name did not apply")
	}
}

// listedExceptions serves the SlimImageExceptions of items as the
// manager's cache does with UnsafeDisableDeepCopy (shallow copies of the
// cached objects) and everything else from Reader.
type listedExceptions struct {
	client.Reader
	items []v1alpha1.SlimImageException
}

func (r listedExceptions) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l, ok := list.(*v1alpha1.SlimImageExceptionList)
	if !ok {
		return r.Reader.List(ctx, list, opts...)
	}
	var o client.ListOptions
	o.ApplyOptions(opts)
	l.Items = make([]v1alpha1.SlimImageException, 0, len(r.items))
	for _, e := range r.items {
		if e.Namespace == o.Namespace {
			l.Items = append(l.Items, e)
		}
	}
	return nil
}

// A namespace's owner who creates thousands of exceptions costs a review
// no more than exception.MaxPerNamespace compilations, and reviews keep
// no more of them: the first by name of the unexpired ones, not being
// deleted, are picked from the objects before any is compiled.
func TestExceptionsHostileNamespace(t *testing.T) {
	const many = 5000
	var items []v1alpha1.SlimImageException
	add := func(e *v1alpha1.SlimImageException) {
		e.UID = types.UID("uid-" + e.Name)
		e.ResourceVersion = "1"
		items = append(items, *e)
	}
	// In reverse order of name, so that the list is not already sorted.
	for i := many - 1; i >= 0; i-- {
		images := []string{"nothing/*"}
		if i == exception.MaxPerNamespace-1 {
			images = []string{"*"} // the last one selected admits the review
		}
		add(sie(fmt.Sprintf("x%04d", i), time.Hour, v1alpha1.SlimImageExceptionSpec{Images: images}))
	}
	for i := range 10 { // expired ones and one being deleted sort first
		add(sie(fmt.Sprintf("a%02d", i), 0, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	}
	gone := sie("b-gone", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}})
	gone.DeletionTimestamp = &metav1.Time{Time: created}
	add(gone)
	c := newExceptionCase(t, v1alpha1.ExceptionRules{})
	c.h.opts.Reader = listedExceptions{Reader: c.h.opts.Reader, items: items}

	var want []string
	for i := range exception.MaxPerNamespace {
		want = append(want, fmt.Sprintf("x%04d", i))
	}
	names := func(list []*exception.Exception) []string {
		out := make([]string, len(list))
		for i, e := range list {
			out[i] = e.Name
		}
		return out
	}
	first := c.h.exceptionsIn(context.Background(), "team", c.now)
	if diff := cmp.Diff(want, names(first)); diff != "" {
		t.Fatalf("selected exceptions (-want +got):\n%s", diff)
	}
	if n := len(c.h.exceptions.values); n > exception.MaxPerNamespace {
		t.Errorf("one review compiled and cached %d exceptions, want at most %d", n, exception.MaxPerNamespace)
	}
	again := c.h.exceptionsIn(context.Background(), "team", c.now)
	for i := range again {
		if again[i] != first[i] {
			t.Errorf("exception %s compiled again at the second review", again[i].Name)
			break
		}
	}

	// A first review sets up what every review shares (the policy, the
	// decoder's caches); then the heap may grow by the 64 at most.
	if allowed, _, msg := c.review(t, "team"); !allowed {
		t.Fatalf("the 64th exception by name did not apply: %s", msg)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const reviews = 10
	for range reviews {
		if allowed, _, msg := c.review(t, "team"); !allowed {
			t.Fatalf("the 64th exception by name did not apply: %s", msg)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := len(c.h.exceptions.values); n > exception.MaxPerNamespace {
		t.Errorf("after %d reviews %d exceptions cached, want at most %d", reviews, n, exception.MaxPerNamespace)
	}
	// 64 compiled exceptions are some 50 KiB; thousands would be MiBs.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 128<<10 {
		t.Errorf("heap grew by %d bytes over %d reviews, want under 128 KiB", grown, reviews)
	}
}
