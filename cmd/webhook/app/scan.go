package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
)

// fleetScan sets up the background scan (controller.FleetScanner) on
// every replica, with the replicas electing the one that scans: it judges
// with a handler of its own over the webhook's inspector, in the
// background lane (reviews first, paced per registry), and reads
// workloads from the manager's cache.
func fleetScan(mgr ctrl.Manager, o Options, reg prometheus.Registerer, judging admission.Options,
	priority *admission.Priority, unreviewed *controller.UnreviewedPodReconciler) error {
	judging.Inspector = &controller.BackgroundLane{Inspector: judging.Inspector, Priority: priority, Rate: o.ScanRegistryRate}
	judge, err := admission.NewHandler(judging)
	if err != nil {
		return err
	}
	s := &controller.FleetScanner{
		Cache:  mgr.GetCache(),
		Client: mgr.GetClient(),
		API:    mgr.GetAPIReader(),
		Scanner: &fleet.Scanner{Lister: fleet.ReaderLister{Reader: mgr.GetClient()}, Judge: judge,
			// The namespaces the webhook configuration always leaves out.
			Exclude: []string{metav1.NamespaceSystem, corev1.NamespaceNodeLease, metav1.NamespacePublic, o.Namespace}},
		Interval:   o.ScanInterval,
		Debounce:   o.ScanDebounce,
		Election:   &controller.Election{Config: mgr.GetConfig(), Namespace: o.Namespace, Name: controller.DefaultScanLease, Identity: processName()},
		Unreviewed: unreviewed.WasUnreviewed,
	}
	// A Pod found created without a review is reported as such at once.
	unreviewed.Found = s.Trigger
	pub, err := previewPublisher(mgr, o, judging)
	if err != nil {
		return err
	}
	s.Preview = pub.Publish
	if err := s.Register(reg); err != nil {
		return fmt.Errorf("registering the scan's metrics: %w", err)
	}
	return mgr.Add(s)
}
