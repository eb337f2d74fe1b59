package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// scanFixture is a cluster in a fake client: namespaces shop (opted in)
// and lab, an Enforce policy for opted-in namespaces, a Warn policy for
// every namespace, and images in an in-process registry.
type scanFixture struct {
	regs       *devcluster.Registries
	fatDigest  string
	slimDigest string
	objects    []client.Object
}

func newScanFixture(t *testing.T) *scanFixture {
	t.Helper()
	regs := devcluster.StartRegistries("u", "p")
	t.Cleanup(regs.Close)
	if err := regs.PushApps(); err != nil {
		t.Fatal(err)
	}
	digest := func(ref string) string {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(r)
		if err != nil {
			t.Fatal(err)
		}
		return d.Digest.String()
	}
	// The slim app's repository also holds the fat image, under another
	// tag: a tag that moved.
	fat, err := name.ParseReference(regs.GoSDKApp(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(fat)
	if err != nil {
		t.Fatal(err)
	}
	if err := devcluster.Push(regs.Open+"/slim-app:old", img); err != nil {
		t.Fatal(err)
	}
	f := &scanFixture{regs: regs, fatDigest: digest(regs.GoSDKApp()), slimDigest: digest(regs.StaticApp())}
	pol := func(name string, mode v1alpha1.Mode, sel *metav1.LabelSelector) *v1alpha1.SlimImagePolicy {
		p := policy.Default()
		p.Name, p.UID, p.Spec.Mode, p.Spec.NamespaceSelector = name, types.UID("uid-"+name), mode, sel
		p.Spec.Registries.AllowPrivateNetworks = true
		p.Spec.Registries.Insecure = []string{regs.Open, regs.Private}
		return p
	}
	f.objects = []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{corev1.LabelMetadataName: "shop", "slimgate.dev/enabled": "true"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab", Labels: map[string]string{corev1.LabelMetadataName: "lab"}}},
		pol("strict", v1alpha1.ModeEnforce, &metav1.LabelSelector{MatchLabels: map[string]string{"slimgate.dev/enabled": "true"}}),
		pol("watch", v1alpha1.ModeWarn, &metav1.LabelSelector{}),
	}
	return f
}

func (f *scanFixture) add(objs ...client.Object) { f.objects = append(f.objects, objs...) }

func (f *scanFixture) scanner(t *testing.T) *Scanner {
	t.Helper()
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(f.objects...).Build()
	rem, err := registry.NewRemote(registry.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rem.Close)
	h, err := admission.NewHandler(admission.Options{Reader: c, Inspector: rem})
	if err != nil {
		t.Fatal(err)
	}
	return &Scanner{Lister: ReaderLister{Reader: c}, Judge: h}
}

func inNS(ns string, o client.Object) client.Object {
	o.SetNamespace(ns)
	return o
}

func TestScanJudgesRunningDigestsAndSummarises(t *testing.T) {
	f := newScanFixture(t)
	fat, slim := f.regs.GoSDKApp(), f.regs.StaticApp()
	repoOf := func(ref string) string { return ref[:len(ref)-len(":1")] }

	// shop: a Deployment written with the slim tag whose Pod runs the fat
	// digest (the tag moved after it started): the digest running is judged.
	api := &appsv1.Deployment{ObjectMeta: objMeta("api", nil), Spec: appsv1.DeploymentSpec{Template: template(slim)}}
	apiRS := &appsv1.ReplicaSet{ObjectMeta: objMeta("api-1", api), Spec: appsv1.ReplicaSetSpec{Template: template(slim)}}
	apiPod := pod("api-1-x", apiRS, slim)
	apiPod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Image: slim, ImageID: repoOf(slim) + "@" + f.fatDigest}}
	// shop: a slim StatefulSet, a fat CronJob between runs, a bare Pod on a
	// registry that does not answer.
	db := &appsv1.StatefulSet{ObjectMeta: objMeta("db", nil), Spec: appsv1.StatefulSetSpec{Template: template(slim)}}
	cron := &batchv1.CronJob{ObjectMeta: objMeta("nightly", nil)}
	cron.Spec.JobTemplate.Spec.Template = template(fat)
	down := pod("down", nil, "127.0.0.1:1/gone:1")
	// lab: a fat Deployment scaled to zero.
	tool := &appsv1.Deployment{ObjectMeta: objMeta("tool", nil), Spec: appsv1.DeploymentSpec{Template: template(fat)}}
	for _, o := range []client.Object{api, apiRS, apiPod, db, cron, down} {
		f.add(inNS("shop", o))
	}
	f.add(inNS("lab", tool))

	scanned, err := f.scanner(t).Scan(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"shop": {"strict", "watch"}, "lab": {"watch"}}, scanned.Policies); diff != "" {
		t.Errorf("policies per namespace (-want +got):\n%s", diff)
	}
	results := scanned.Workloads
	type got struct {
		Workload, Policy, Reference string
		From                        Source
		Result                      Result
		Rule                        string
		Bloat                       bool
	}
	var have []got
	for _, w := range results {
		if w.Err != nil {
			t.Fatalf("%s: %v", w.Ref, w.Err)
		}
		for _, r := range w.Images {
			have = append(have, got{w.String(), r.Policy, r.Reference, r.From, r.Result, r.Rule(), r.BloatBytes > 0})
		}
	}
	want := []got{
		{"Deployment/lab/tool", "watch", fat, SourceSpec, ResultWarn, "toolchain.go", true},
		{"CronJob/shop/nightly", "strict", fat, SourceSpec, ResultFail, "toolchain.go", true},
		{"CronJob/shop/nightly", "watch", fat, SourceSpec, ResultWarn, "toolchain.go", true},
		{"Deployment/shop/api", "strict", slim + "@" + f.fatDigest, SourceRunning, ResultFail, "toolchain.go", true},
		{"Deployment/shop/api", "watch", slim + "@" + f.fatDigest, SourceRunning, ResultWarn, "toolchain.go", true},
		{"Pod/shop/down", "strict", "127.0.0.1:1/gone:1", SourceSpec, ResultError, "inspection.failed", false},
		{"Pod/shop/down", "watch", "127.0.0.1:1/gone:1", SourceSpec, ResultError, "inspection.failed", false},
		{"StatefulSet/shop/db", "strict", slim, SourceSpec, ResultPass, RulePass, false},
		{"StatefulSet/shop/db", "watch", slim, SourceSpec, ResultPass, RulePass, false},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}

	sums := Summarise(results)
	type sum struct {
		Policy                   string
		Scanned, InViolation, NS int
		Top                      []string
	}
	var haveSums []sum
	for _, s := range sums {
		hs := sum{Policy: s.Policy, Scanned: s.WorkloadsScanned, InViolation: s.WorkloadsInViolation, NS: s.NamespacesAffected()}
		for _, ns := range s.Top(5) {
			hs.Top = append(hs.Top, ns.Namespace)
			if ns.BloatBytes <= 0 {
				t.Errorf("%s: namespace %s has workloads in violation and no bloat", s.Policy, ns.Namespace)
			}
		}
		haveSums = append(haveSums, hs)
	}
	wantSums := []sum{
		{Policy: "strict", Scanned: 4, InViolation: 2, NS: 1, Top: []string{"shop"}},
		{Policy: "watch", Scanned: 5, InViolation: 3, NS: 2, Top: []string{"shop", "lab"}},
	}
	if diff := cmp.Diff(wantSums, haveSums); diff != "" {
		t.Fatalf("summaries (-want +got):\n%s", diff)
	}
}

// TestScanCountsWorkloadsWhoseImagesAreAllExcluded: a workload every
// policy excludes the images of is still scanned, and passes.
func TestScanCountsWorkloadsWhoseImagesAreAllExcluded(t *testing.T) {
	f := newScanFixture(t)
	for _, o := range f.objects {
		if p, ok := o.(*v1alpha1.SlimImagePolicy); ok {
			p.Spec.Exclude.Images = []string{f.regs.Open + "/*"}
		}
	}
	f.add(inNS("lab", &appsv1.Deployment{ObjectMeta: objMeta("tool", nil), Spec: appsv1.DeploymentSpec{Template: template(f.regs.GoSDKApp())}}))
	scanned, err := f.scanner(t).Scan(context.Background(), []string{"lab"})
	if err != nil {
		t.Fatal(err)
	}
	results := scanned.Workloads
	if len(results) != 1 || len(results[0].Images) != 0 || !cmp.Equal(results[0].Policies, []string{"watch"}) {
		t.Fatalf("results = %+v, want the one workload, scanned by watch, no image judged", results)
	}
	s := Summarise(results)
	if len(s) != 1 || s[0].WorkloadsScanned != 1 || s[0].WorkloadsInViolation != 0 {
		t.Fatalf("summary = %+v", s)
	}
}

// TestScanLeavesExcludedNamespacesOut: a namespace the webhook never
// reviews is never scanned, whatever the policies select.
func TestScanLeavesExcludedNamespacesOut(t *testing.T) {
	f := newScanFixture(t)
	f.add(inNS("lab", &appsv1.Deployment{ObjectMeta: objMeta("tool", nil), Spec: appsv1.DeploymentSpec{Template: template(f.regs.GoSDKApp())}}),
		inNS("shop", &appsv1.Deployment{ObjectMeta: objMeta("api", nil), Spec: appsv1.DeploymentSpec{Template: template(f.regs.GoSDKApp())}}))
	s := f.scanner(t)
	s.Exclude = []string{"lab"}
	scanned, err := s.Scan(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if results := scanned.Workloads; len(results) != 1 || results[0].Namespace != "shop" {
		t.Fatalf("results = %+v, want shop's workload only", results)
	}
	if _, ok := scanned.Policies["lab"]; ok || len(scanned.Policies["shop"]) != 2 {
		t.Errorf("policies per namespace %v, want shop's only", scanned.Policies)
	}
}

// TestScanReportsExceptedImagesAsSkipped: an image whose findings under a
// policy are all waived by exceptions of its namespace is skip, naming
// the exception and its expiry; a partly waived one keeps the verdict of
// the rest and names the exception too; an expired exception, or one of
// another workload, waives nothing.
func TestScanReportsExceptedImagesAsSkipped(t *testing.T) {
	f := newScanFixture(t)
	for _, o := range f.objects {
		if p, ok := o.(*v1alpha1.SlimImagePolicy); ok && p.Name == "strict" {
			p.Spec.SizeBudget.MaxCompressed = resource.NewQuantity(1, resource.BinarySI) // every image is over it
		}
	}
	fat := f.regs.GoSDKApp()
	expires := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	exc := func(name, kind, workload string, policies, rules []string, expires time.Time) *v1alpha1.SlimImageException {
		return &v1alpha1.SlimImageException{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, CreationTimestamp: metav1.NewTime(expires.Add(-time.Hour))},
			Spec: v1alpha1.SlimImageExceptionSpec{Policies: policies, Rules: rules, Images: []string{fat},
				Workloads: []v1alpha1.ExceptionWorkload{{Kind: v1alpha1.WorkloadKind(kind), Name: workload}},
				Reason:    "builds code", Expires: metav1.NewTime(expires)},
		}
	}
	// runner runs the fat image: its running digest is judged, and the
	// exception, which names the image as the spec writes it, waives it.
	runner := &appsv1.Deployment{ObjectMeta: objMeta("runner", nil), Spec: appsv1.DeploymentSpec{Template: template(fat)}}
	runnerRS := &appsv1.ReplicaSet{ObjectMeta: objMeta("runner-1", runner), Spec: appsv1.ReplicaSetSpec{Template: template(fat)}}
	runnerPod := pod("runner-1-x", runnerRS, fat)
	runnerPod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Image: fat, ImageID: fat[:len(fat)-len(":1")] + "@" + f.fatDigest}}
	f.add(
		exc("ci-runner", "Deployment", "runner", []string{"strict", "watch"}, []string{"*"}, expires),
		exc("go-only", "StatefulSet", "builder", []string{"*"}, []string{"toolchain.*", "build.*"}, expires),
		exc("stale", "Deployment", "late", []string{"*"}, []string{"*"}, time.Now().Add(-time.Minute)),
		inNS("shop", runner), inNS("shop", runnerRS), inNS("shop", runnerPod),
		inNS("shop", &appsv1.StatefulSet{ObjectMeta: objMeta("builder", nil), Spec: appsv1.StatefulSetSpec{Template: template(fat)}}),
		inNS("shop", &appsv1.Deployment{ObjectMeta: objMeta("late", nil), Spec: appsv1.DeploymentSpec{Template: template(fat)}}),
		inNS("shop", &appsv1.Deployment{ObjectMeta: objMeta("other", nil), Spec: appsv1.DeploymentSpec{Template: template(fat)}}),
	)
	scanned, err := f.scanner(t).Scan(context.Background(), []string{"shop"})
	if err != nil {
		t.Fatal(err)
	}
	results := scanned.Workloads
	type got struct {
		Workload, Policy string
		Result           Result
		Rule             string
		Names            string // the exception the message names, if any
	}
	var have []got
	for _, w := range results {
		if w.Err != nil {
			t.Fatalf("%s: %v", w.Ref, w.Err)
		}
		for _, r := range w.Images {
			if w.Name == "runner" && r.From != SourceRunning {
				t.Errorf("runner: judged %s from %s, want the running digest", r.Reference, r.From)
			}
			g := got{Workload: w.String(), Policy: r.Policy, Result: r.Result, Rule: r.Rule()}
			for _, e := range []string{"ci-runner", "go-only", "stale"} {
				if strings.Contains(r.Message, "SlimImageException "+e) {
					g.Names = e
					if !strings.Contains(r.Message, expires.Format(time.RFC3339)) {
						t.Errorf("%s under %s: message %q does not say when %s expires (%s)", w.Ref, r.Policy, r.Message, e, expires.Format(time.RFC3339))
					}
				}
			}
			have = append(have, g)
		}
	}
	want := []got{
		{"Deployment/shop/late", "strict", ResultFail, "toolchain.go", ""},
		{"Deployment/shop/late", "watch", ResultWarn, "toolchain.go", ""},
		{"Deployment/shop/other", "strict", ResultFail, "toolchain.go", ""},
		{"Deployment/shop/other", "watch", ResultWarn, "toolchain.go", ""},
		{"Deployment/shop/runner", "strict", ResultSkip, "toolchain.go", "ci-runner"},
		{"Deployment/shop/runner", "watch", ResultSkip, "toolchain.go", "ci-runner"},
		{"StatefulSet/shop/builder", "strict", ResultFail, policy.RuleSizeCompressed, "go-only"},
		{"StatefulSet/shop/builder", "watch", ResultSkip, "toolchain.go", "go-only"},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
	// Skipped images are in no violation: only late and other are.
	for _, s := range Summarise(results) {
		if s.WorkloadsScanned != 4 || s.WorkloadsInViolation != map[string]int{"strict": 3, "watch": 2}[s.Policy] {
			t.Errorf("summary of %s: %d scanned, %d in violation", s.Policy, s.WorkloadsScanned, s.WorkloadsInViolation)
		}
	}
}
