package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

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
	// ReasonGrandfathered: a ReplicaSet, Job or Pod that a built-in
	// controller created from its owner's template, with exactly the
	// template's images, breaks a policy's rules and was admitted as its
	// owner was (spec.existingWorkloads Keep).
	ReasonGrandfathered = "ImageGrandfathered"
	// ReasonExcepted: a SlimImageException waived what a policy found in
	// an image, and it was admitted.
	ReasonExcepted = "ImageExcepted"
)

// VerdictGrandfathered is the verdict of a ReasonGrandfathered decision in
// slimgate_decisions_total, next to "allow" and "deny".
const VerdictGrandfathered = "grandfathered"

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
	// Object is the object under review, as the API server sent it (a
	// created object carries the name and UID the API server gave it);
	// Kind its group/version/kind.
	Object client.Object
	Kind   schema.GroupVersionKind
	// VerifiedOwner, when set, is an owner of Object that the caller
	// verified against the live cluster: Events regard it instead of
	// Object. It is never to be taken from an ownerReference as the
	// requester wrote it.
	VerifiedOwner *corev1.ObjectReference
	// Policy is the policy that judged it.
	Policy *v1alpha1.SlimImagePolicy
	// Verdict is "allow", "deny" or VerdictGrandfathered, for the metric.
	Verdict string
	// Reason is one of the Reason constants; empty records no Event (the
	// policy found nothing).
	Reason string
	// Action is ActionDeny or ActionAdmit.
	Action string
	// Note explains the decision as a whole; it is the Event's note when
	// Images is empty, cut to MaxNote bytes.
	Note string
	// Images, when set, say what the decision found in each image: each
	// one with a Reason gets an Event of its own.
	Images []ImageNote
}

// ImageNote is what a decision says about one image.
type ImageNote struct {
	// Image is the reference as the object names it.
	Image string
	// Reason is one of the Reason constants; empty: nothing to record.
	Reason string
	// Note explains it; cut to MaxNote bytes.
	Note string
}

// Notes returns the Events the decision records, one per image: the
// images with a Reason, or, when the decision names no image, its own
// Reason and Note. Notes are cut to MaxNote bytes.
func (d Decision) Notes() []ImageNote {
	if d.Reason == "" {
		return nil
	}
	if len(d.Images) == 0 {
		return []ImageNote{{Reason: d.Reason, Note: policy.Truncate(d.Note, MaxNote)}}
	}
	out := make([]ImageNote, 0, len(d.Images))
	for _, im := range d.Images {
		if im.Reason != "" {
			out = append(out, ImageNote{Image: im.Image, Reason: im.Reason, Note: policy.Truncate(im.Note, MaxNote)})
		}
	}
	return out
}

// Regarding returns the object an Event about d regards: d.VerifiedOwner
// when set, else the object the requester created or changed, by the name
// and UID the API server gave it. A refused object does not exist, and
// every retry of its request gets a new UID: its Event names it without
// one, so that the retries count on one Event. An object sent without a
// name (only generateName) is named by its name prefix.
func Regarding(d Decision) corev1.ObjectReference {
	if d.VerifiedOwner != nil {
		ref := *d.VerifiedOwner
		if ref.Namespace == "" {
			ref.Namespace = d.Object.GetNamespace()
		}
		return ref
	}
	apiVersion, kind := d.Kind.ToAPIVersionAndKind()
	ref := corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Name: d.Object.GetName(),
		Namespace: d.Object.GetNamespace(), UID: d.Object.GetUID()}
	if ref.Name == "" {
		ref.Name = strings.TrimRight(d.Object.GetGenerateName(), "-.")
	}
	if d.Action == ActionDeny {
		ref.UID = ""
	}
	return ref
}

// policyRef is the Events' related object: the policy.
func policyRef(p *v1alpha1.SlimImagePolicy) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SlimImagePolicy", Name: p.Name, UID: p.UID}
}

// Defaults of Options.
const (
	// DefaultFlushInterval is the shortest time between two writes of one
	// Event's count: a count is at most this late.
	DefaultFlushInterval = 15 * time.Second
	// DefaultMaxKeys bounds the Events whose counts are kept.
	DefaultMaxKeys = 4096
	// DefaultQueueSize bounds the occurrences waiting to be counted.
	DefaultQueueSize = 1024
)

// Options configures a Recorder.
type Options struct {
	// Client writes the Events (create and patch of events.k8s.io/v1
	// Events); nil: no Events, metrics only.
	Client client.Writer
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Instance is the Events' reportingInstance; empty: the host name.
	Instance string
	// FlushInterval is the shortest time between two writes of one
	// Event; 0: DefaultFlushInterval. An Event is created as soon as its
	// first occurrence is recorded.
	FlushInterval time.Duration
	// MaxKeys bounds the Events whose counts are kept in memory; beyond
	// it the one seen least recently is written a last time and
	// forgotten (its next occurrence starts a new Event). 0:
	// DefaultMaxKeys.
	MaxKeys int
	// QueueSize bounds the occurrences waiting for the writer; Record
	// drops (and counts) what does not fit. 0: DefaultQueueSize.
	QueueSize int
}

// Recorder turns decisions into Events and metrics. Record never blocks
// and never calls the API server: occurrences go through a bounded queue
// to one writer (Start), which keeps one Event per regarding object,
// image, policy, reason and action, and writes its count at a bounded
// rate. Failures are logged and counted and never change a decision.
type Recorder struct {
	client    client.Writer
	instance  string
	queue     chan occurrence
	agg       *aggregator
	decisions *prometheus.CounterVec
	dropped   *prometheus.CounterVec
}

// Drop reasons of slimgate_events_dropped_total.
const (
	// DropQueueFull: the writer was behind and the queue full.
	DropQueueFull = "queue_full"
	// DropUnwritten: the count could not be written before its Event was
	// forgotten (evicted, or the recorder stopped).
	DropUnwritten = "unwritten"
)

// NewRecorder returns a recorder; its writer runs once Start is called.
func NewRecorder(o Options) (*Recorder, error) {
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Instance == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "slimgate"
		}
		o.Instance = host
	}
	r := &Recorder{
		client:   o.Client,
		instance: policy.Truncate(o.Instance, 128),
		queue:    make(chan occurrence, o.QueueSize),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_decisions_total",
			Help: "Admission decisions per policy, by the policy's mode and the verdict.",
		}, []string{"policy", "mode", "verdict"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slimgate_events_dropped_total",
			Help: "Occurrences of Events that no Event counts: the queue was full (queue_full), or the count could not be written before the Event was forgotten (unwritten).",
		}, []string{"reason"}),
	}
	r.agg = newAggregator(o.FlushInterval, o.MaxKeys, r.write, r.dropped.WithLabelValues(DropUnwritten))
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{r.decisions, r.dropped} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Decisions returns the decision counter.
func (r *Recorder) Decisions() *prometheus.CounterVec { return r.decisions }

// Dropped returns the counter of occurrences no Event counts, by reason.
func (r *Recorder) Dropped() *prometheus.CounterVec { return r.dropped }

// Record counts a decision and queues one occurrence per Event it
// records (Decision.Notes). It never blocks: an occurrence that finds the
// queue full is dropped and counted.
func (r *Recorder) Record(ctx context.Context, d Decision) {
	r.decisions.WithLabelValues(d.Policy.Name, string(d.Policy.Spec.Mode), d.Verdict).Inc()
	if r.client == nil {
		return
	}
	notes := d.Notes()
	if len(notes) == 0 {
		return
	}
	regarding, related := Regarding(d), policyRef(d.Policy)
	now := time.Now()
	for _, n := range notes {
		o := occurrence{key: key{regarding: regarding, related: related, image: imageKey(n.Image), reason: n.Reason, action: d.Action},
			note: n.Note, at: now}
		select {
		case r.queue <- o:
		default:
			r.dropped.WithLabelValues(DropQueueFull).Inc()
		}
	}
	logf.FromContext(ctx).V(1).Info("recording events", "reason", d.Reason, "regarding", regarding.Kind+"/"+regarding.Name, "events", len(notes))
}

// maxKeyImage is the longest image reference an Event's key keeps as
// written: longer than any reference a registry serves (a repository name
// of 255 bytes, a tag of 128, a digest).
const maxKeyImage = 512

// imageKey is the image part of an Event's key: the reference, or, when
// it is longer than maxKeyImage, its hash. The requester writes the
// reference, the API server bounds only the request, and the key is kept
// in the queue and in memory for as long as the Event is counted.
func imageKey(ref string) string {
	if len(ref) <= maxKeyImage {
		return ref
	}
	sum := sha256.Sum256([]byte(ref))
	return "#sha256:" + hex.EncodeToString(sum[:])
}

// Start runs the writer until ctx ends, then writes the counts not yet
// written (for a few seconds at most) and returns. End ctx only once no
// more decisions come: after the webhook server has stopped.
func (r *Recorder) Start(ctx context.Context) error {
	if r.client == nil {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(tickEvery(r.agg.interval))
	defer tick.Stop()
	for {
		select {
		case o := <-r.queue:
			r.agg.observe(ctx, o, time.Now())
		case now := <-tick.C:
			r.agg.flushDue(ctx, now)
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlush)
			defer cancel()
			for drained := false; !drained; {
				select {
				case o := <-r.queue:
					r.agg.observe(final, o, time.Now())
				default:
					drained = true
				}
			}
			r.agg.flushAll(final, time.Now())
			if err := final.Err(); err != nil && !errors.Is(err, context.Canceled) {
				logf.FromContext(ctx).Info("not every event count was written before stopping", "error", err.Error())
			}
			return nil
		}
	}
}

// finalFlush bounds the writes at shutdown.
const finalFlush = 5 * time.Second

// tickEvery is how often the writer looks for counts due: a tenth of the
// interval, at least every 100 ms and at most every second.
func tickEvery(interval time.Duration) time.Duration {
	return min(max(interval/10, 100*time.Millisecond), time.Second)
}
