package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
)

// +kubebuilder:rbac:groups=apps,resources=deployments;replicasets;statefulsets;daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=replicationcontrollers,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=slimgate-system,resources=leases,verbs=get;create;update

// Defaults of the background scan.
const (
	// DefaultScanInterval is the time between two scans when nothing
	// triggers one: tags that moved are seen within it.
	DefaultScanInterval = time.Hour
	// DefaultScanDebounce is the quiet after a change (a policy, a
	// namespace's labels, a workload) before the scan it triggers starts;
	// a stream of changes delays it at most maxDebounces times as long.
	DefaultScanDebounce = 5 * time.Second
	// DefaultScanLease names the Lease the replicas elect the scanning one
	// with.
	DefaultScanLease = "slimgate-scan"
	// maxDebounces bounds the delay of a scan by a stream of changes.
	maxDebounces = 6
	// maxTopNamespaces is the length of status.scan.topNamespaces.
	maxTopNamespaces = 10
)

// Election configures the election of the one replica that scans.
type Election struct {
	// Config reaches the API server (Leases).
	Config *rest.Config
	// Namespace and Name name the Lease.
	Namespace, Name string
	// Identity names this replica.
	Identity string
}

// FleetScanner is the background scan: it judges every running workload
// (fleet.Scanner) under the policies that select its namespace, at start,
// when a policy, a namespace's labels or a workload changes (debounced),
// and every Interval, and publishes what it found: one openreports.io
// Report per namespace and policy, each policy's status.scan, and the
// slimgate_workloads_in_violation, slimgate_bloat_bytes,
// slimgate_scan_duration_seconds and slimgate_scan_images_total metrics.
//
// It is a manager runnable that every replica starts (webhook serving is
// never tied to it); with Election set, only the replica holding the
// Lease scans, and another takes over within the Lease's duration when it
// goes.
type FleetScanner struct {
	// Cache holds the informers whose changes trigger scans, and is what
	// Scanner's Lister reads.
	Cache cache.Cache
	// Client writes Reports and policy status.
	Client client.Client
	// API reads slimgate's Reports (uncached: each is up to a megabyte).
	API client.Reader
	// Scanner judges the workloads.
	Scanner *fleet.Scanner
	// Unreviewed, when set, reports whether a Pod got in without a review
	// (UnreviewedPodReconciler.WasUnreviewed).
	Unreviewed func(types.UID) bool
	// Interval and Debounce: 0 takes the defaults.
	Interval, Debounce time.Duration
	// Election, when set, elects the one replica that scans.
	Election *Election
	// Preview, when set, runs after each scan on the replica that scans
	// (internal/preview.Publisher.Publish: what each policy would deny).
	Preview func(ctx context.Context) error

	metrics  *scanMetrics
	triggers chan struct{}
	scanned  chan struct{} // receives after each scan (tests)
	noReport bool          // the Report API was not found: logged once
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica starts it, and it elects its own leader (Election).
func (s *FleetScanner) NeedLeaderElection() bool { return false }

// Register registers the scan's metrics with reg.
func (s *FleetScanner) Register(reg prometheus.Registerer) error {
	m, err := newScanMetrics(reg)
	if err != nil {
		return err
	}
	s.metrics = m
	return nil
}

// Start implements manager.Runnable: it watches for changes and scans
// (when elected) until ctx ends.
func (s *FleetScanner) Start(ctx context.Context) error {
	if s.metrics == nil {
		return errors.New("fleet scanner: Register was not called")
	}
	if s.Cache == nil || s.Client == nil || s.API == nil || s.Scanner == nil {
		return errors.New("fleet scanner: Cache, Client, API and Scanner are required")
	}
	if s.Interval <= 0 {
		s.Interval = DefaultScanInterval
	}
	if s.Debounce <= 0 {
		s.Debounce = DefaultScanDebounce
	}
	s.triggers = make(chan struct{}, 1)
	if s.Scanner.Progress == nil {
		s.Scanner.Progress = s.metrics.progress
	}
	if err := s.watch(ctx); err != nil {
		return err
	}
	if s.Election == nil {
		s.run(ctx)
		return nil
	}
	return s.elect(ctx)
}

// elect campaigns for the Lease, scans while it holds it, and campaigns
// again when it loses it, until ctx ends.
func (s *FleetScanner) elect(ctx context.Context) error {
	e := s.Election
	leases, err := coordinationv1.NewForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("fleet scanner: lease client: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	log := logf.FromContext(ctx).WithValues("lease", e.Namespace+"/"+e.Name)
	for ctx.Err() == nil {
		var held term
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			Name:            e.Name,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					held.run(func() {
						log.Info("elected to scan")
						s.run(lctx)
					})
				},
				OnStoppedLeading: func() { log.Info("no longer scanning") },
			},
		})
		if err != nil {
			return fmt.Errorf("fleet scanner: %w", err)
		}
		le.Run(ctx)
		held.end()
	}
	return nil
}

// term is one term of leadership. le.Run starts OnStartedLeading in a
// goroutine it does not wait for: end waits for the scans run (no scan
// outlives Start, nor overlaps the next term's), and keeps those not yet
// started from starting.
type term struct {
	mu    sync.Mutex
	ended bool
	wg    sync.WaitGroup
}

// run runs f unless the term ended.
func (t *term) run(f func()) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	f()
}

// end ends the term and waits for what run runs.
func (t *term) end() {
	t.mu.Lock()
	t.ended = true
	t.mu.Unlock()
	t.wg.Wait()
}

// watch triggers a scan on the changes that can change its results.
func (s *FleetScanner) watch(ctx context.Context) error {
	objs := []client.Object{&v1alpha1.SlimImagePolicy{}, &corev1.Namespace{}, &v1alpha1.SlimImageException{}}
	for _, gvk := range admission.Kinds() {
		o, err := s.Client.Scheme().New(gvk)
		if err != nil {
			return fmt.Errorf("fleet scanner: %w", err)
		}
		objs = append(objs, o.(client.Object))
	}
	for _, o := range objs {
		inf, err := s.Cache.GetInformer(ctx, o, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("fleet scanner: watching %T: %w", o, err)
		}
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(any, bool) { s.trigger() },
			UpdateFunc: func(old, cur any) {
				if changes(old, cur) {
					s.trigger()
				}
			},
			DeleteFunc: func(any) { s.trigger() },
		})
		if err != nil {
			return fmt.Errorf("fleet scanner: watching %T: %w", o, err)
		}
	}
	return nil
}

// Trigger asks for a scan (debounced); before Start it does nothing.
func (s *FleetScanner) Trigger() { s.trigger() }

func (s *FleetScanner) trigger() {
	select {
	case s.triggers <- struct{}{}:
	default:
	}
}

// changes reports whether an update can change what the scan finds: a
// new generation (a policy's, exception's or workload's spec), a
// namespace's labels, a Pod's images or the digests it runs, an
// exception's conditions (ExceptionReconciler marks it Expired when it
// stops applying).
func changes(old, cur any) bool {
	o, ok1 := old.(client.Object)
	c, ok2 := cur.(client.Object)
	if !ok1 || !ok2 {
		return true
	}
	switch cp := cur.(type) {
	case *corev1.Namespace:
		return !maps.Equal(o.GetLabels(), c.GetLabels())
	case *corev1.Pod:
		op, ok := old.(*corev1.Pod)
		return !ok || !slices.Equal(podImages(op), podImages(cp))
	case *v1alpha1.SlimImageException:
		oe, ok := old.(*v1alpha1.SlimImageException)
		if !ok || o.GetGeneration() != c.GetGeneration() {
			return true
		}
		return !slices.EqualFunc(oe.Status.Conditions, cp.Status.Conditions, func(a, b metav1.Condition) bool {
			return a.Type == b.Type && a.Status == b.Status
		})
	}
	return o.GetGeneration() != c.GetGeneration()
}

// podImages lists a Pod's image references and the image IDs its status
// reports.
func podImages(p *corev1.Pod) []string {
	var out []string
	for _, img := range admission.Images(&p.Spec, "spec") {
		out = append(out, img.Reference)
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			out = append(out, cs.Name+"="+cs.ImageID)
		}
	}
	return out
}

// run scans at once, then on triggers (debounced) and every Interval,
// until ctx ends.
func (s *FleetScanner) run(ctx context.Context) {
	log := logf.FromContext(ctx).WithName("scan")
	if !s.Cache.WaitForCacheSync(ctx) {
		return
	}
	// Changes before the first scan are in it.
	select {
	case <-s.triggers:
	default:
	}
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		if err := s.ScanOnce(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "scan failed")
		}
		if s.scanned != nil {
			select {
			case s.scanned <- struct{}{}:
			default:
			}
		}
		tick.Reset(s.Interval)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.triggers:
			if !s.settle(ctx) {
				return
			}
		}
	}
}

// settle waits for Debounce without a trigger (at most maxDebounces
// times); false when ctx ended.
func (s *FleetScanner) settle(ctx context.Context) bool {
	t := time.NewTimer(s.Debounce)
	defer t.Stop()
	for range maxDebounces {
		select {
		case <-ctx.Done():
			return false
		case <-s.triggers:
			t.Reset(s.Debounce)
		case <-t.C:
			return true
		}
	}
	return ctx.Err() == nil
}

// ScanOnce scans every workload and publishes the results.
func (s *FleetScanner) ScanOnce(ctx context.Context) error {
	start := time.Now()
	scanned, err := s.Scanner.Scan(ctx, nil)
	if err != nil {
		return err
	}
	results := scanned.Workloads
	at := metav1.Now()
	sums := fleet.Summarise(results)
	s.metrics.record(results, sums, at.Sub(start).Seconds())
	log := logf.FromContext(ctx).WithName("scan")
	failed := 0
	for _, w := range results {
		if w.Err != nil {
			failed++
			log.V(1).Info("workload not judged", "workload", w.String(), "error", w.Err.Error())
		}
	}
	var errs []error
	if err := s.publishReports(ctx, results, at); err != nil {
		errs = append(errs, err)
	}
	if err := s.publishStatus(ctx, sums, at); err != nil {
		errs = append(errs, err)
	}
	if s.Preview != nil {
		if err := s.Preview(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	log.Info("scanned", "workloads", len(results), "notJudged", failed, "seconds", at.Sub(start).Seconds())
	return errors.Join(errs...)
}

// publishReports writes the Reports, unless the Report API is not
// installed.
func (s *FleetScanner) publishReports(ctx context.Context, results []fleet.WorkloadResult, at metav1.Time) error {
	unreviewed := map[types.UID]bool{}
	if s.Unreviewed != nil {
		for _, w := range results {
			for _, uid := range w.Pods {
				if s.Unreviewed(uid) {
					unreviewed[w.UID] = true
				}
			}
		}
	}
	err := writeReports(ctx, s.Client, s.API, buildReports(results, unreviewed, at))
	if meta.IsNoMatchError(err) {
		if !s.noReport {
			logf.FromContext(ctx).Info("the openreports.io Report API is not installed; the scan writes no Reports")
			s.noReport = true
		}
		return nil
	}
	s.noReport = false
	return err
}

// publishStatus sets every policy's status.scan.
func (s *FleetScanner) publishStatus(ctx context.Context, sums []fleet.Summary, at metav1.Time) error {
	var list v1alpha1.SlimImagePolicyList
	if err := s.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("listing policies: %w", err)
	}
	byName := map[string]*fleet.Summary{}
	for i := range sums {
		byName[sums[i].Policy] = &sums[i]
	}
	var errs []error
	for i := range list.Items {
		p := &list.Items[i]
		st := &v1alpha1.ScanStatus{LastScanTime: at}
		if sum := byName[p.Name]; sum != nil {
			st.WorkloadsScanned = count32(sum.WorkloadsScanned)
			st.WorkloadsInViolation = count32(sum.WorkloadsInViolation)
			st.NamespacesAffected = count32(sum.NamespacesAffected())
			for _, ns := range sum.Top(maxTopNamespaces) {
				st.TopNamespaces = append(st.TopNamespaces, v1alpha1.NamespaceViolations{Namespace: ns.Namespace, Workloads: count32(ns.InViolation)})
			}
		}
		orig := p.DeepCopy()
		p.Status.Scan = st
		if err := s.Client.Status().Patch(ctx, p, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("status of policy %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// count32 is a count as the status holds it, capped at math.MaxInt32.
func count32(n int) int32 {
	switch {
	case n > math.MaxInt32:
		return math.MaxInt32
	case n < 0:
		return 0
	}
	return int32(n)
}
