package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/policy"
)

var deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

func workload(ns, name string, kind schema.GroupVersionKind, policies []string, images ...fleet.ImageResult) fleet.WorkloadResult {
	return fleet.WorkloadResult{Ref: fleet.Ref{Kind: kind, Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)},
		Policies: policies, Pods: []types.UID{types.UID(ns + "-" + name + "-pod")}, Images: images}
}

func imageResult(pol, ref string, res fleet.Result, bloat int64, rules ...string) fleet.ImageResult {
	r := fleet.ImageResult{Target: fleet.Target{Image: admission.Image{Reference: ref, Container: "app", Source: "container"}, Written: ref, From: fleet.SourceSpec},
		Policy: pol, Result: res, Rules: rules, Message: "msg " + ref, BloatBytes: bloat, Digest: "sha256:" + ref}
	if res == fleet.ResultFail {
		r.Action = policy.ActionDeny
	}
	return r
}

func scanClient(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, reportsv1alpha1.Install, corev1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&v1alpha1.SlimImagePolicy{}).Build()
}

// TestReportsOnePerNamespaceAndPolicy: each namespace gets one Report per
// policy that scanned it, one result per workload image, the workload as
// subject, the bloat as a property; unchanged results keep their
// timestamps and unchanged Reports are not written; Reports of policies
// and namespaces gone are deleted.
func TestReportsOnePerNamespaceAndPolicy(t *testing.T) {
	c := scanClient(t)
	ctx := context.Background()
	results := []fleet.WorkloadResult{
		workload("shop", "api", deploymentKind, []string{"strict", "watch"},
			imageResult("strict", "fat:1", fleet.ResultFail, 1000, "toolchain.go", "toolchain.c"),
			imageResult("watch", "fat:1", fleet.ResultWarn, 1000, "toolchain.go")),
		workload("shop", "db", appsv1.SchemeGroupVersion.WithKind("StatefulSet"), []string{"strict", "watch"},
			imageResult("strict", "slim:1", fleet.ResultPass, 0), imageResult("watch", "slim:1", fleet.ResultPass, 0)),
		workload("lab", "tool", deploymentKind, []string{"watch"}, imageResult("watch", "gone:1", fleet.ResultError, 0, policy.RuleInspectionFailed)),
	}
	first := metav1.NewTime(time.Unix(1000, 0))
	reps := buildReports(results, map[types.UID]bool{"shop-api": true}, first)
	if err := writeReports(ctx, c, c, reps); err != nil {
		t.Fatal(err)
	}
	var list reportsv1alpha1.ReportList
	if err := c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	type sum struct {
		NS, Name, Source       string
		Pass, Fail, Warn, Errs int
		Results                int
	}
	var have []sum
	for _, r := range list.Items {
		have = append(have, sum{r.Namespace, r.Name, r.Source, r.Summary.Pass, r.Summary.Fail, r.Summary.Warn, r.Summary.Error, len(r.Results)})
	}
	want := []sum{
		{"lab", "slimgate-watch", "slimgate", 0, 0, 0, 1, 1},
		{"shop", "slimgate-strict", "slimgate", 1, 1, 0, 0, 2},
		{"shop", "slimgate-watch", "slimgate", 1, 0, 1, 0, 2},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("reports (-want +got):\n%s", diff)
	}
	var strict reportsv1alpha1.Report
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "slimgate-strict"}, &strict); err != nil {
		t.Fatal(err)
	}
	fail := strict.Results[0]
	wantSubject := []corev1.ObjectReference{{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "api", UID: "shop-api"}}
	if diff := cmp.Diff(wantSubject, fail.Subjects); diff != "" {
		t.Errorf("subject (-want +got):\n%s", diff)
	}
	if fail.Rule != "toolchain.go" || fail.Result != "fail" || fail.Policy != "strict" || fail.Properties[PropBloat] != "1000" ||
		fail.Properties[PropRules] != "toolchain.go,toolchain.c" || fail.Properties[PropAction] != "deny" ||
		fail.Properties[PropUnreviewed] != "true" || !strings.HasPrefix(fail.Description, "created without a review") {
		t.Errorf("fail result = %+v", fail)
	}
	if strict.Labels[ReportPolicyLabel] != "strict" || strict.Labels[ReportManagedBy] != ReportSource {
		t.Errorf("labels = %v", strict.Labels)
	}

	// A second scan: the lab workload is gone, shop unchanged.
	rv := strict.ResourceVersion
	if err := writeReports(ctx, c, c, buildReports(results[:2], map[types.UID]bool{"shop-api": true}, metav1.NewTime(time.Unix(2000, 0)))); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "slimgate-strict"}, &strict); err != nil {
		t.Fatal(err)
	}
	if strict.ResourceVersion != rv || strict.Results[0].Timestamp.Seconds != 1000 {
		t.Errorf("an unchanged report was rewritten (resourceVersion %s -> %s, timestamp %d)", rv, strict.ResourceVersion, strict.Results[0].Timestamp.Seconds)
	}
	if err := c.List(ctx, &list); err != nil || len(list.Items) != 2 {
		t.Fatalf("after the lab workload went: %d reports (err %v), want 2", len(list.Items), err)
	}
}

// TestReportsAreBounded: a namespace of many workloads keeps its Report
// under MaxReportResults, failures first, and the summary counts all.
func TestReportsAreBounded(t *testing.T) {
	var results []fleet.WorkloadResult
	for i := range MaxReportResults + 10 {
		res := fleet.ResultPass
		if i%100 == 0 {
			res = fleet.ResultFail
		}
		results = append(results, workload("big", "w"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), deploymentKind, []string{"p"}, imageResult("p", "img", res, 0)))
	}
	reps := buildReports(results, nil, metav1.Now())
	if len(reps) != 1 {
		t.Fatalf("%d reports", len(reps))
	}
	r := reps[0]
	if len(r.Results) != MaxReportResults || r.Summary.Pass+r.Summary.Fail != MaxReportResults+10 || r.Summary.Fail != 11 {
		t.Fatalf("results %d, summary %+v", len(r.Results), r.Summary)
	}
	for _, res := range r.Results[:11] {
		if res.Result != "fail" {
			t.Fatalf("failures are not kept first: %v", res.Result)
		}
	}
}

// TestUnjudgedWorkloadIsAnError: a workload the scan could not judge is
// an error result in the Report of each policy that scanned it, with the
// reason (as slimgate scan shows it), not left out of the Reports.
func TestUnjudgedWorkloadIsAnError(t *testing.T) {
	lost := workload("shop", "api", deploymentKind, []string{"strict", "watch"})
	lost.Err = errors.New("judging Deployment shop/api: reading policies: cache not synced")
	results := []fleet.WorkloadResult{lost,
		workload("shop", "db", deploymentKind, []string{"strict"}, imageResult("strict", "slim:1", fleet.ResultPass, 0))}
	reps := buildReports(results, nil, metav1.Now())
	if len(reps) != 2 {
		t.Fatalf("%d reports, want one per policy", len(reps))
	}
	for _, r := range reps {
		var errs []reportsv1alpha1.ReportResult
		for _, res := range r.Results {
			if res.Result == "error" {
				errs = append(errs, res)
			}
		}
		if r.Summary.Error != 1 || len(errs) != 1 {
			t.Fatalf("report %s: summary %+v, %d error results; want the unjudged workload as one error", r.Name, r.Summary, len(errs))
		}
		e := errs[0]
		if len(e.Subjects) != 1 || e.Subjects[0].Name != "api" || !strings.Contains(e.Description, "cache not synced") ||
			e.Policy != strings.TrimPrefix(r.Name, "slimgate-") {
			t.Errorf("report %s: error result %+v", r.Name, e)
		}
	}
}

// TestScanStatusAndMetrics: every policy's status.scan and the gauges
// follow the summaries; series of namespaces gone are deleted.
func TestScanStatusAndMetrics(t *testing.T) {
	strict := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "strict"}}
	idle := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "idle"}}
	c := scanClient(t, strict, idle)
	reg := prometheus.NewRegistry()
	s := &FleetScanner{Client: c, API: c}
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	results := []fleet.WorkloadResult{
		workload("shop", "api", deploymentKind, []string{"strict"}, imageResult("strict", "fat:1", fleet.ResultFail, 1000, "toolchain.go")),
		workload("shop", "web", deploymentKind, []string{"strict"}, imageResult("strict", "fat:2", fleet.ResultFail, 500, "toolchain.go")),
		workload("lab", "tool", deploymentKind, []string{"strict"}, imageResult("strict", "fat:1", fleet.ResultFail, 1000, "toolchain.go")),
		workload("docs", "site", deploymentKind, []string{"strict"}, imageResult("strict", "slim:1", fleet.ResultPass, 0)),
	}
	sums := fleet.Summarise(results)
	s.metrics.record(results, sums, 1.5)
	if err := s.publishStatus(ctx, sums, metav1.NewTime(time.Unix(3000, 0))); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(strict), strict); err != nil {
		t.Fatal(err)
	}
	want := &v1alpha1.ScanStatus{LastScanTime: metav1.NewTime(time.Unix(3000, 0)), WorkloadsScanned: 4, WorkloadsInViolation: 3, NamespacesAffected: 2,
		TopNamespaces: []v1alpha1.NamespaceViolations{{Namespace: "shop", Workloads: 2}, {Namespace: "lab", Workloads: 1}}}
	if diff := cmp.Diff(want, strict.Status.Scan); diff != "" {
		t.Errorf("status.scan (-want +got):\n%s", diff)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(idle), idle); err != nil || idle.Status.Scan == nil || idle.Status.Scan.WorkloadsScanned != 0 {
		t.Errorf("a policy selecting no workload: status.scan %+v (err %v), want zeros", idle.Status.Scan, err)
	}
	if got := testutil.ToFloat64(s.metrics.inViolation.WithLabelValues("strict", "shop")); got != 2 {
		t.Errorf("in violation in shop = %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.metrics.bloat.WithLabelValues("strict", "shop")); got != 1500 {
		t.Errorf("bloat in shop = %v, want 1500", got)
	}
	if n := testutil.CollectAndCount(s.metrics.inViolation); n != 3 {
		t.Errorf("%d in-violation series, want 3 (shop, lab, docs)", n)
	}
	if got := testutil.ToFloat64(s.metrics.images.WithLabelValues("fail")); got != 3 {
		t.Errorf("failed images counted %v, want 3", got)
	}
	// lab is deleted: its series go with the next scan.
	results = append(results[:2], results[3])
	s.metrics.record(results, fleet.Summarise(results), 1)
	if n := testutil.CollectAndCount(s.metrics.inViolation); n != 2 {
		t.Errorf("%d in-violation series after lab went, want 2", n)
	}
	if n := testutil.CollectAndCount(s.metrics.bloat); n != 2 {
		t.Errorf("%d bloat series after lab went, want 2", n)
	}
}

// TestChangesThatTriggerAScan: only changes that can change a scan's
// results trigger one.
func TestChangesThatTriggerAScan(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Generation: 1}}
	dep2 := dep.DeepCopy()
	dep2.Status.Replicas = 3
	dep3 := dep.DeepCopy()
	dep3.Generation = 2
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}}}
	ns2 := ns.DeepCopy()
	ns2.Labels["slimgate.dev/enabled"] = "true"
	ns3 := ns.DeepCopy()
	ns3.Annotations = map[string]string{"x": "y"}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "app:1"}}}}
	pod2 := pod.DeepCopy()
	pod2.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", ImageID: "app@sha256:x"}}
	pod3 := pod2.DeepCopy()
	pod3.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady}}
	exc := &v1alpha1.SlimImageException{ObjectMeta: metav1.ObjectMeta{Name: "e", Generation: 1}}
	exc.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ExceptionExpired, Status: metav1.ConditionFalse, Reason: "InEffect"}}
	excExpired := exc.DeepCopy()
	excExpired.Status.Conditions[0].Status, excExpired.Status.Conditions[0].Reason = metav1.ConditionTrue, "Expired"
	excMessage := exc.DeepCopy()
	excMessage.Status.Conditions[0].Message = "in effect until tomorrow"
	for _, tc := range []struct {
		name     string
		old, cur any
		want     bool
	}{
		{"exception expires", exc, excExpired, true},
		{"exception message", exc, excMessage, false},
		{"deployment status", dep, dep2, false},
		{"deployment spec", dep, dep3, true},
		{"namespace labels", ns, ns2, true},
		{"namespace annotations", ns, ns3, false},
		{"pod reports its digest", pod, pod2, true},
		{"pod ready", pod2, pod3, false},
	} {
		if got := changes(tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: changes = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestReportsWrittenDespiteOneFailure: a Report that cannot be written (a
// namespace being deleted) keeps no other from being written, and the
// error is returned.
func TestReportsWrittenDespiteOneFailure(t *testing.T) {
	s := runtime.NewScheme()
	if err := reportsv1alpha1.Install(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if obj.GetNamespace() == "going" {
				return errors.New("namespace going is being terminated")
			}
			return cl.Create(ctx, obj, opts...)
		},
	}).Build()
	results := []fleet.WorkloadResult{
		workload("going", "a", deploymentKind, []string{"p"}, imageResult("p", "x:1", fleet.ResultPass, 0)),
		workload("staying", "b", deploymentKind, []string{"p"}, imageResult("p", "x:1", fleet.ResultPass, 0)),
	}
	err := writeReports(context.Background(), c, c, buildReports(results, nil, metav1.Now()))
	if err == nil || !strings.Contains(err.Error(), "going") {
		t.Fatalf("err = %v, want the failure of namespace going", err)
	}
	var rep reportsv1alpha1.Report
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "staying", Name: ReportName("p")}, &rep); err != nil {
		t.Fatalf("the other namespace's report: %v", err)
	}
}

// TestReportsNameTheExceptions: a result of an image exceptions waived
// names each exception, when it expires and the rules it waived; the
// summary counts skips; a result no exception touched says nothing of
// them.
func TestReportsNameTheExceptions(t *testing.T) {
	until := time.Date(2031, 7, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	skipped := imageResult("strict", "ci:1", fleet.ResultSkip, 0, "toolchain.go")
	skipped.Waived = []fleet.Waived{{Waiver: policy.Waiver{Exception: "ci-runner", Namespace: "shop", Expires: until}, Rules: []string{"toolchain.go"}}}
	partly := imageResult("strict", "builder:1", fleet.ResultFail, 0, "size.compressed")
	partly.Waived = []fleet.Waived{
		{Waiver: policy.Waiver{Exception: "go-only", Namespace: "shop", Expires: until}, Rules: []string{"toolchain.go", "build.go"}},
		{Waiver: policy.Waiver{Exception: "gcc", Namespace: "shop", Expires: until.Add(time.Hour)}, Rules: []string{"toolchain.gcc"}},
	}
	reps := buildReports([]fleet.WorkloadResult{
		workload("shop", "runner", deploymentKind, []string{"strict"}, skipped),
		workload("shop", "builder", deploymentKind, []string{"strict"}, partly),
		workload("shop", "web", deploymentKind, []string{"strict"}, imageResult("strict", "web:1", fleet.ResultPass, 0)),
	}, nil, metav1.Now())
	if len(reps) != 1 || len(reps[0].Results) != 3 {
		t.Fatalf("reports %+v", reps)
	}
	type got struct {
		Result                   string
		Exceptions, Expire, Rule string
	}
	var have []got
	for _, r := range reps[0].Results {
		have = append(have, got{string(r.Result), r.Properties[PropExceptions], r.Properties[PropExpires], r.Properties[PropWaived]})
	}
	want := []got{
		{"skip", "ci-runner", "2031-07-01T10:00:00Z", "toolchain.go"},
		{"fail", "go-only,gcc", "2031-07-01T10:00:00Z,2031-07-01T11:00:00Z", "toolchain.go,build.go,toolchain.gcc"},
		{"pass", "", "", ""},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
	if s := reps[0].Summary; s.Skip != 1 || s.Fail != 1 || s.Pass != 1 {
		t.Fatalf("summary %+v", s)
	}
}

// TestReportsFitInAnObject: a Report stays under maxReportBytes (etcd
// keeps no object over 1.5 MiB, and a Report too large is never written,
// so the last one that was stays, stale) however long the references and
// messages of its results: the workload's author writes the image, of
// any length. Failures are kept first, each text cut, and the summary
// counts every result.
func TestReportsFitInAnObject(t *testing.T) {
	var results []fleet.WorkloadResult
	for i := range MaxReportResults {
		r := imageResult("p", fmt.Sprintf("registry.example/%04d/%s:1", i, strings.Repeat("a", 4<<10)), fleet.ResultPass, 0)
		r.Message = strings.Repeat("m", 1<<10)
		results = append(results, workload("big", fmt.Sprint("w", i), deploymentKind, []string{"p"}, r))
	}
	results = append(results, workload("big", "huge", deploymentKind, []string{"p"},
		imageResult("p", "registry.example/"+strings.Repeat("h", 1<<20)+":1", fleet.ResultFail, 0, policy.RuleInspectionInvalid)))
	reps := buildReports(results, nil, metav1.Now())
	if len(reps) != 1 {
		t.Fatalf("%d reports, want 1", len(reps))
	}
	r := reps[0]
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxReportBytes {
		t.Errorf("the Report is %d bytes, over %d (etcd's limit is 1.5 MiB)", len(b), maxReportBytes)
	}
	if len(r.Results) == 0 || r.Results[0].Subjects[0].Name != "huge" || r.Results[0].Result != "fail" {
		t.Errorf("the failure is not kept first")
	}
	if r.Summary.Pass != MaxReportResults || r.Summary.Fail != 1 {
		t.Errorf("summary %+v, want every result counted", r.Summary)
	}
}
