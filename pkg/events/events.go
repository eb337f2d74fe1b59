package events

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientevents "k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get

// Event reasons.
const (
	// ReasonRejected: an Enforce policy denied an image.
	ReasonRejected = "ImageRejected"
	// ReasonWarned: a Warn policy admitted an image with a warning.
	ReasonWarned = "ImageWarned"
	// ReasonAudited: an Audit policy admitted an image that breaks its rules.
	ReasonAudited = "ImageAudited"
	// ReasonInspectionFailed: an image could not be inspected and
	// onInspectionError Allow admitted it.
	ReasonInspectionFailed = "InspectionFailed"
)

// Event actions.
const (
	// ActionDeny: the request was refused.
	ActionDeny = "Deny"
	// ActionAdmit: the request was admitted.
	ActionAdmit = "Admit"
)

// MaxNote is the longest note an events.k8s.io/v1 Event accepts.
const MaxNote = 1024

// Decision is what one policy made of one admission request.
type Decision struct {
	// Object is the object under review; Kind its group/version/kind.
	Object client.Object
	Kind   schema.GroupVersionKind
	// Policy is the policy that judged it.
	Policy *v1alpha1.SlimImagePolicy
	// Verdict is "allow" or "deny", for the metric.
	Verdict string
	// Reason is one of the Reason constants; empty records no Event (the
	// policy found nothing).
	Reason string
	// Action is ActionDeny or ActionAdmit.
	Action string
	// Note explains the decision; it is cut to MaxNote bytes.
	Note string
}

// Recorder turns decisions into Events and metrics. Failures are logged and
// never change a decision.
type Recorder struct {
	events    clientevents.EventRecorder
	owners    client.Reader
	decisions *prometheus.CounterVec
}

// NewRecorder returns a recorder emitting through rec (the manager's
// GetEventRecorder("slimgate")), looking owners up through owners (an
// uncached reader; nil: owner references are used as found on the object)
// and registering slimgate_decisions_total with reg (nil: not registered).
func NewRecorder(rec clientevents.EventRecorder, owners client.Reader, reg prometheus.Registerer) (*Recorder, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slimgate_decisions_total",
		Help: "Admission decisions per policy, by the policy's mode and the verdict.",
	}, []string{"policy", "mode", "verdict"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &Recorder{events: rec, owners: owners, decisions: c}, nil
}

// Decisions returns the decision counter.
func (r *Recorder) Decisions() *prometheus.CounterVec { return r.decisions }

// Record counts a decision and, when it has a Reason, emits a Warning Event.
func (r *Recorder) Record(ctx context.Context, d Decision) {
	r.decisions.WithLabelValues(d.Policy.Name, string(d.Policy.Spec.Mode), d.Verdict).Inc()
	if d.Reason == "" || r.events == nil {
		return
	}
	regarding := r.Regarding(ctx, d.Object, d.Kind)
	related := &corev1.ObjectReference{
		APIVersion: v1alpha1.GroupVersion.String(),
		Kind:       "SlimImagePolicy",
		Name:       d.Policy.Name,
		UID:        d.Policy.UID,
	}
	logf.FromContext(ctx).V(1).Info("recording event", "reason", d.Reason, "regarding", regarding.Kind+"/"+regarding.Name)
	r.events.Eventf(regarding, related, corev1.EventTypeWarning, d.Reason, d.Action, "%s", policy.Truncate(d.Note, MaxNote))
}

// Regarding returns the object an Event should regard: the workload the
// user created. A Pod made by a controller regards its controller (a
// ReplicaSet's Deployment, a Job's CronJob, looked up when a reader is
// set); a Pod with only generateName and no owner regards the Pod by its
// name prefix; anything else regards the object by namespace and name (a
// Pod being created has no UID yet).
func (r *Recorder) Regarding(ctx context.Context, obj client.Object, kind schema.GroupVersionKind) *corev1.ObjectReference {
	if owner := metav1.GetControllerOf(obj); owner != nil {
		ref := &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name,
			Namespace: obj.GetNamespace(), UID: owner.UID}
		if up := r.ownerOf(ctx, ref); up != nil {
			return up
		}
		return ref
	}
	apiVersion, k := kind.ToAPIVersionAndKind()
	ref := &corev1.ObjectReference{APIVersion: apiVersion, Kind: k, Name: obj.GetName(),
		Namespace: obj.GetNamespace(), UID: obj.GetUID()}
	if ref.Name == "" {
		ref.Name = strings.TrimRight(obj.GetGenerateName(), "-.")
	}
	return ref
}

// ownerOf goes one step further up for the owners that are themselves
// usually made by a controller: ReplicaSet -> Deployment, Job -> CronJob.
func (r *Recorder) ownerOf(ctx context.Context, ref *corev1.ObjectReference) *corev1.ObjectReference {
	if r.owners == nil {
		return nil
	}
	var obj client.Object
	switch {
	case ref.Kind == "ReplicaSet" && ref.APIVersion == "apps/v1":
		obj = &appsv1.ReplicaSet{}
	case ref.Kind == "Job" && ref.APIVersion == "batch/v1":
		obj = &batchv1.Job{}
	default:
		return nil
	}
	if err := r.owners.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, obj); err != nil {
		logf.FromContext(ctx).V(1).Info("owner lookup failed; the event regards the direct owner", "owner", ref.Name, "error", err.Error())
		return nil
	}
	up := metav1.GetControllerOf(obj)
	if up == nil {
		return nil
	}
	return &corev1.ObjectReference{APIVersion: up.APIVersion, Kind: up.Kind, Name: up.Name,
		Namespace: ref.Namespace, UID: up.UID}
}
