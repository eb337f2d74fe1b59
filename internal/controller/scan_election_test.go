package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
)

// startAPI starts kube-apiserver and etcd with slimgate's CRDs and
// openreports.io's, creates the namespaces, and returns the config, the
// scheme and an uncached client.
func startAPI(t *testing.T, namespaces ...string) (*rest.Config, *runtime.Scheme, client.Client) {
	t.Helper()
	env, cfg, err := devcluster.Env{Root: "../..", ExtraCRDDirs: []string{"../../config/crd/openreports"}}.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := admin.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, scheme, admin
}

// cachedClient returns a cache (not started) and a client reading it.
func cachedClient(t *testing.T, cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, client.Client) {
	t.Helper()
	c, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme, Cache: &client.CacheOptions{Reader: c}})
	if err != nil {
		t.Fatal(err)
	}
	return c, cl
}

// countingJudge counts the scans that asked it for policies.
type countingJudge struct{ calls atomic.Int64 }

func (j *countingJudge) PoliciesFor(context.Context, string) ([]*v1alpha1.SlimImagePolicy, error) {
	j.calls.Add(1)
	return nil, nil
}

func (j *countingJudge) Assess(context.Context, *admission.Workload, []admission.Image, []string) ([]admission.Assessment, error) {
	return nil, nil
}

// Of two replicas on a real API server, only the one holding the Lease
// scans; when it goes, the other takes over.
func TestOneReplicaScans(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd: not in -short mode (make test-unit)")
	}
	ctx := t.Context()
	cfg, scheme, admin := startAPI(t, "slimgate-system")
	type replica struct {
		judge *countingJudge
		stop  context.CancelFunc
	}
	var replicas []*replica
	for i := range 2 {
		rctx, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		c, cl := cachedClient(t, cfg, scheme)
		r := &replica{judge: &countingJudge{}, stop: stop}
		s := &FleetScanner{Cache: c, Client: cl, API: admin, Debounce: 50 * time.Millisecond,
			Scanner:  &fleet.Scanner{Lister: fleet.ReaderLister{Reader: c}, Judge: r.judge},
			Election: &Election{Config: cfg, Namespace: "slimgate-system", Name: DefaultScanLease, Identity: fmt.Sprint("replica-", i)}}
		if err := s.Register(prometheus.NewRegistry()); err != nil {
			t.Fatal(err)
		}
		go func() { _ = c.Start(rctx) }()
		go func() { _ = s.Start(rctx) }()
		replicas = append(replicas, r)
	}
	scanning := func() (leader, other *replica, err error) {
		a, b := replicas[0].judge.calls.Load(), replicas[1].judge.calls.Load()
		switch {
		case a > 0 && b == 0:
			return replicas[0], replicas[1], nil
		case b > 0 && a == 0:
			return replicas[1], replicas[0], nil
		}
		return nil, nil, fmt.Errorf("scans asked for policies %d and %d times, want one replica only", a, b)
	}
	if err := devcluster.Poll(ctx, 30*time.Second, func() error { _, _, err := scanning(); return err }); err != nil {
		t.Fatal(err)
	}
	// A change triggers the leader's scan only.
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "more"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	leader, other, err := scanning()
	if err != nil {
		t.Fatal(err)
	}
	// The leader goes; the other replica takes the Lease and scans.
	leader.stop()
	if err := devcluster.Poll(ctx, 30*time.Second, func() error {
		if other.judge.calls.Load() == 0 {
			return fmt.Errorf("the remaining replica has not scanned")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// The elected replica's Start returns only once the scan it runs has
// returned: leaderelection starts the leader's work in a goroutine it
// does not wait for, so a scan still writing outlived the manager's
// shutdown, and one ending on a lost Lease overlapped the next term's.
func TestElectedScanEndsBeforeStartReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd: not in -short mode (make test-unit)")
	}
	ctx := t.Context()
	cfg, scheme, admin := startAPI(t, "slimgate-system")
	c, cl := cachedClient(t, cfg, scheme)
	previewing, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := &FleetScanner{Cache: c, Client: cl, API: admin,
		Scanner:  &fleet.Scanner{Lister: fleet.ReaderLister{Reader: c}, Judge: &countingJudge{}},
		Election: &Election{Config: cfg, Namespace: "slimgate-system", Name: DefaultScanLease, Identity: "replica"},
		Preview: func(ctx context.Context) error { // a write still under way when ctx ends
			once.Do(func() { close(previewing) })
			<-ctx.Done()
			<-release
			return ctx.Err()
		}}
	if err := s.Register(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = c.Start(rctx) }()
	returned := make(chan struct{})
	go func() { _ = s.Start(rctx); close(returned) }()
	select {
	case <-previewing:
	case <-time.After(30 * time.Second):
		t.Fatal("no scan within 30s")
	}
	stop()
	select {
	case <-returned:
		close(release)
		t.Fatal("Start returned while its scan was still running")
	case <-time.After(time.Second):
	}
	close(release)
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return within 30s of its scan")
	}
}

// pageCounter records the largest list answer of a reader and whether
// every list asked for pages.
type pageCounter struct {
	client.Reader
	most    atomic.Int64
	unpaged atomic.Int64
}

func (p *pageCounter) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var o client.ListOptions
	o.ApplyOptions(opts)
	if o.Limit <= 0 {
		p.unpaged.Add(1)
	}
	err := p.Reader.List(ctx, list, opts...)
	if n := int64(meta.LenList(list)); n > p.most.Load() {
		p.most.Store(n)
	}
	return err
}

// TestReportsListedInPages: the Reports are read a page at a time (each
// is up to a megabyte; a cluster has one per namespace and policy), and
// those on every page that are no longer wanted are deleted.
func TestReportsListedInPages(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd: not in -short mode (make test-unit)")
	}
	ctx := t.Context()
	_, _, admin := startAPI(t, "shop")
	var results []fleet.WorkloadResult
	var policies []string
	for i := range reportPage + reportPage/2 {
		policies = append(policies, fmt.Sprint("p", i))
	}
	results = append(results, workload("shop", "api", deploymentKind, policies))
	if err := writeReports(ctx, admin, admin, buildReports(results, nil, metav1.Now())); err != nil {
		t.Fatal(err)
	}
	// Every policy but the first goes.
	results[0].Policies = policies[:1]
	api := &pageCounter{Reader: admin}
	if err := writeReports(ctx, admin, api, buildReports(results, nil, metav1.Now())); err != nil {
		t.Fatal(err)
	}
	if n, most := api.unpaged.Load(), api.most.Load(); n > 0 || most > reportPage {
		t.Errorf("%d lists without a limit, the largest answer %d Reports; want pages of at most %d", n, most, reportPage)
	}
	var left reportsv1alpha1.ReportList
	if err := admin.List(ctx, &left, client.InNamespace("shop")); err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 1 || left.Items[0].Name != ReportName("p0") {
		t.Errorf("%d Reports left, want only %s", len(left.Items), ReportName("p0"))
	}
}
