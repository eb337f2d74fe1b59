package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=slimgate,verbs=get

// DefaultUnreviewedDelay is how long after its creation a Pod is looked
// for in the review records: the webhook timeout (10 s) for the review to
// end, and the publish interval for another replica to publish it.
const DefaultUnreviewedDelay = 15 * time.Second

// recordSkew is the clock difference allowed between the API server that
// stamps a Pod's creation and the replicas that time their records.
const recordSkew = 30 * time.Second

// NoFindings is the reason label of slimgate_unreviewed_total for a Pod a
// review would have found nothing in.
const NoFindings = "NoFindings"

// UnreviewedPodReconciler notices Pods created without a review: the
// webhook could not be reached and its failurePolicy Ignore let the API
// server admit them. It watches Pod creations (metadata only), waits
// Delay, and looks each Pod's UID up in the review records: this
// replica's ReviewLog and what every replica published (ReviewPublisher).
// A Pod found in none, in a namespace the webhook configuration sends to
// review with failurePolicy Ignore, is judged as the review would have
// judged it (Judge: the policies that select its namespace, inspection
// and evaluation; never a refusal, the Pod exists), and recorded per
// policy: an ImageUnreviewed Event regarding the Pod for each image (one
// when nothing was found), which says what the review would have found,
// and slimgate_unreviewed_total{policy,reason}. The Events' names derive from
// what they are about, so that of several replicas judging the same Pod
// one records it and counts it.
//
// Records speak only for the time they cover: a Pod created before every
// record began (before slimgate first ran), before a record that left
// reviews out, or more than Window ago is not judged.
type UnreviewedPodReconciler struct {
	// Client reads Pod metadata, Namespaces and review records (the
	// manager's cache).
	Client client.Reader
	// API reads, for a Pod found unreviewed only, the whole Pod and the
	// ValidatingWebhookConfiguration WebhookConfigName.
	API client.Reader
	// Log is this replica's record of reviews.
	Log   *ReviewLog
	Judge JudgeFunc
	// Events writes the ImageUnreviewed Events (Recorder.WriteOnce).
	Events *events.Recorder
	// Namespace is the release namespace: where the records are, and a
	// namespace the webhook never reviews.
	Namespace         string
	WebhookConfigName string
	// Delay and Window: 0 takes DefaultUnreviewedDelay and
	// DefaultReviewWindow.
	Delay, Window time.Duration
	// Workers is how many Pods are judged at once; 0 takes
	// DefaultUnreviewedWorkers.
	Workers int
	// Found, when set, is called after a Pod is found unreviewed
	// (WasUnreviewed then reports it): the background scan rescans.
	Found func()

	unreviewed *prometheus.CounterVec
	found      foundUnreviewed
	vwc        struct {
		sync.Mutex
		at  time.Time
		got *admissionregistrationv1.ValidatingWebhookConfiguration
	}
}

// SetupWithManager registers the controller (which runs on the leader
// only when the manager elects one) and slimgate_unreviewed_total with
// reg.
func (r *UnreviewedPodReconciler) SetupWithManager(mgr ctrl.Manager, reg prometheus.Registerer) error {
	if err := r.init(reg); err != nil {
		return err
	}
	recent := predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool {
			return time.Since(e.Object.GetCreationTimestamp().Time) < r.Window
		},
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).Named("unreviewed-pods").
		For(&corev1.Pod{}, builder.OnlyMetadata, builder.WithPredicates(recent)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).Complete(r)
}

// DefaultUnreviewedWorkers is how many Pods found unreviewed are judged at
// once: a judge can take judgeTimeout (registries that do not answer),
// and a Pod not judged within the review window never is, so one at a
// time would leave most of a large outage's Pods unjudged.
const DefaultUnreviewedWorkers = 4

// init fills in the defaults and registers the metric with reg.
func (r *UnreviewedPodReconciler) init(reg prometheus.Registerer) error {
	if r.Delay <= 0 {
		r.Delay = DefaultUnreviewedDelay
	}
	if r.Window <= 0 {
		r.Window = DefaultReviewWindow
	}
	if r.Workers <= 0 {
		r.Workers = DefaultUnreviewedWorkers
	}
	r.unreviewed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slimgate_unreviewed_total",
		Help: "Pods created without a review (the webhook could not be reached), per policy that selects their namespace, by the Event reason a review would have recorded (NoFindings: none).",
	}, []string{"policy", "reason"})
	return reg.Register(r.unreviewed)
}

// Unreviewed returns the counter of unreviewed Pods.
func (r *UnreviewedPodReconciler) Unreviewed() *prometheus.CounterVec { return r.unreviewed }

// Reconcile implements reconcile.Reconciler.
func (r *UnreviewedPodReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if slices.Contains(r.neverReviewed(), req.Namespace) {
		return ctrl.Result{}, nil
	}
	var meta metav1.PartialObjectMetadata
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err := r.Client.Get(ctx, req.NamespacedName, &meta); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := keyOf(meta.UID)
	if r.Log.has(key) {
		return ctrl.Result{}, nil
	}
	created, now := meta.CreationTimestamp.Time, time.Now()
	if wait := created.Add(r.Delay).Sub(now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	records, err := r.records(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if created.Before(horizon(now, r.Window, records)) {
		logf.FromContext(ctx).V(1).Info("created before the review records begin; not judged", "created", created)
		return ctrl.Result{}, nil
	}
	if r.Log.has(key) {
		return ctrl.Result{}, nil
	}
	for _, rec := range records {
		if rec.has(key, created.Add(-recordSkew)) {
			return ctrl.Result{}, nil
		}
	}
	return ctrl.Result{}, r.judge(ctx, req.NamespacedName, meta.UID)
}

// records returns this replica's record (bounds only) and the published
// ones; a record that does not parse is left out.
func (r *UnreviewedPodReconciler) records(ctx context.Context) ([]record, error) {
	var list corev1.ConfigMapList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingLabels{ReviewsLabel: "true"}); err != nil {
		return nil, fmt.Errorf("listing review records: %w", err)
	}
	since, truncated := r.Log.completeSince()
	out := []record{{since: since, truncated: truncated}}
	for i := range list.Items {
		rec, err := parseRecord(&list.Items[i])
		if err != nil {
			logf.FromContext(ctx).Info("review record ignored", "error", err.Error())
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// horizon is the creation time from which the records tell reviewed Pods
// from unreviewed ones: not before the window, the first record's
// beginning, nor any record's cut (reviews it left out).
func horizon(now time.Time, window time.Duration, records []record) time.Time {
	h := now.Add(-window)
	first := now
	for _, rec := range records {
		if rec.since.Before(first) {
			first = rec.since
		}
		if rec.truncated && rec.since.After(h) {
			h = rec.since
		}
	}
	if first.After(h) {
		h = first
	}
	return h
}

// judgeTimeout bounds the judging of one Pod.
const judgeTimeout = 30 * time.Second

// judge judges a Pod found unreviewed, when the webhook reviews its
// namespace, and records it.
func (r *UnreviewedPodReconciler) judge(ctx context.Context, key client.ObjectKey, uid types.UID) error {
	if !r.reviewed(ctx, key.Namespace) {
		return nil
	}
	var pod corev1.Pod
	if err := r.API.Get(ctx, key, &pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if pod.UID != uid { // a Pod of that name made since
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, judgeTimeout)
	defer cancel()
	decisions, err := r.Judge(ctx, &pod)
	if err != nil {
		return err
	}
	r.found.add(pod.UID)
	if r.Found != nil {
		r.Found()
	}
	regarding := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	for _, d := range decisions {
		for i, n := range unreviewedNotes(d, &pod) {
			created, err := r.Events.WriteOnce(ctx, regarding, d.Policy, n, events.ActionAdmit)
			if err != nil {
				return err
			}
			if i > 0 || !created {
				continue
			}
			reason := d.Reason
			if reason == "" {
				reason = NoFindings
			}
			r.unreviewed.WithLabelValues(d.Policy.Name, reason).Inc()
			logf.FromContext(ctx).Info("pod created without a review", "policy", d.Policy.Name, "review would have recorded", reason)
		}
	}
	return nil
}

// neverReviewed are the namespaces the webhook configuration always
// leaves out.
func (r *UnreviewedPodReconciler) neverReviewed() []string {
	return []string{metav1.NamespaceSystem, corev1.NamespaceNodeLease, metav1.NamespacePublic, r.Namespace}
}

// reviewed reports whether the webhook configuration sends the creation
// of Pods in namespace ns to review with a failurePolicy that lets the API
// server admit them unreviewed (under Fail none gets in without a review);
// when it cannot be read, every namespace but those it always leaves out.
func (r *UnreviewedPodReconciler) reviewed(ctx context.Context, ns string) bool {
	vwc := r.webhookConfiguration(ctx)
	if vwc == nil {
		return !slices.Contains(r.neverReviewed(), ns)
	}
	nsLabels := map[string]string{corev1.LabelMetadataName: ns}
	var n corev1.Namespace
	if err := r.Client.Get(ctx, client.ObjectKey{Name: ns}, &n); err == nil {
		nsLabels = n.Labels
	}
	for _, w := range vwc.Webhooks {
		if !reviewsPodCreate(w.Rules) || (w.FailurePolicy != nil && *w.FailurePolicy == admissionregistrationv1.Fail) {
			continue
		}
		if w.NamespaceSelector == nil {
			return true
		}
		sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if err == nil && sel.Matches(labels.Set(nsLabels)) {
			return true
		}
	}
	return false
}

// webhookConfiguration reads the webhook configuration, at most once a
// minute; nil when it cannot be read.
func (r *UnreviewedPodReconciler) webhookConfiguration(ctx context.Context) *admissionregistrationv1.ValidatingWebhookConfiguration {
	r.vwc.Lock()
	defer r.vwc.Unlock()
	if time.Since(r.vwc.at) < time.Minute {
		return r.vwc.got
	}
	r.vwc.at, r.vwc.got = time.Now(), nil
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := r.API.Get(ctx, client.ObjectKey{Name: r.WebhookConfigName}, &vwc); err != nil {
		logf.FromContext(ctx).V(1).Info("webhook configuration not read; taking the namespaces it always leaves out", "error", err.Error())
		return nil
	}
	r.vwc.got = &vwc
	return r.vwc.got
}

// reviewsPodCreate reports whether rules send Pod CREATEs.
func reviewsPodCreate(rules []admissionregistrationv1.RuleWithOperations) bool {
	for _, rule := range rules {
		if has(rule.APIGroups, "") && has(rule.Resources, "pods") &&
			(has(rule.Operations, admissionregistrationv1.Create) || has(rule.Operations, admissionregistrationv1.OperationAll)) {
			return true
		}
	}
	return false
}

// has reports whether list holds v or the wildcard.
func has[T ~string](list []T, v T) bool {
	return slices.Contains(list, v) || slices.Contains(list, "*")
}

// unreviewedNotes are the ImageUnreviewed Events of a decision about an
// unreviewed Pod: one per image the review would have recorded, saying
// what it would have done; one for the Pod when it would have found
// nothing.
func unreviewedNotes(d events.Decision, pod *corev1.Pod) []events.ImageNote {
	const lead = "Created without a review: the webhook could not be reached and its failurePolicy let the API server admit it. Judged afterwards: "
	var out []events.ImageNote
	for _, n := range d.Notes() {
		out = append(out, events.ImageNote{Image: n.Image, Reason: events.ReasonUnreviewed,
			Note: policy.Truncate(lead+would(d, n.Reason)+"\n"+n.Note, events.MaxNote)})
	}
	if len(out) > 0 {
		return out
	}
	var refs []string
	for _, im := range admission.Images(&pod.Spec, "spec") {
		if !slices.Contains(refs, im.Reference) {
			refs = append(refs, im.Reference)
		}
	}
	return []events.ImageNote{{Reason: events.ReasonUnreviewed,
		Note: policy.Truncate(lead+fmt.Sprintf("policy %s finds nothing in %s.", d.Policy.Name, strings.Join(refs, ", ")), events.MaxNote)}}
}

// would says what the review of d would have done about an image, by the
// Event reason it would have recorded.
func would(d events.Decision, reason string) string {
	policyName := d.Policy.Name
	switch reason {
	case events.ReasonRejected:
		return "policy " + policyName + " would have refused this image."
	case events.ReasonWarned:
		return "policy " + policyName + " would have admitted this image with a warning."
	case events.ReasonAudited:
		return "policy " + policyName + " would have admitted this image and recorded its findings."
	case events.ReasonInspectionFailed:
		return "policy " + policyName + " could not inspect this image."
	case events.ReasonExcepted:
		return "policy " + policyName + " would have admitted this image under an exception."
	case events.ReasonGrandfathered:
		owner := events.Regarding(d)
		return "policy " + policyName + " would have admitted this image, grandfathered with its owner " + owner.Kind + " " + owner.Name + ", and recorded its findings there (" + reason + ")."
	}
	return "policy " + policyName + ": " + reason + "."
}

// StripPodMetadata is a cache transform (cache.ByObject.Transform for
// Pods) for the Pod metadata the controller watches: it keeps a Pod's
// name, namespace, UID, resourceVersion and timestamps, and drops the rest
// (labels, annotations, owner references, managed fields). Anything else
// passes unchanged.
func StripPodMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}}, nil
}
