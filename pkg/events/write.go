package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// ReportingController is the Events' reportingController.
const ReportingController = "slimgate"

// writeTimeout bounds one write of an Event.
const writeTimeout = 5 * time.Second

// write creates e's Event, or patches its series when it exists; an Event
// deleted meanwhile (the API server keeps Events for an hour by default)
// is created again with the whole count.
func (r *Recorder) write(ctx context.Context, e *entry, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	count := e.count
	err := r.patchSeries(ctx, e, count)
	if e.name == "" || apierrors.IsNotFound(err) {
		ev := r.event(e, count, now)
		if err = r.client.Create(ctx, ev); err == nil {
			e.name = ev.Name
		}
	}
	if err != nil {
		logf.FromContext(ctx).Info("event not written", "reason", e.reason, "regarding", e.regarding.Kind+"/"+e.regarding.Name, "error", err.Error())
		return err
	}
	e.written = count
	return nil
}

// patchSeries sets the series of e's existing Event to count; it does
// nothing for an Event not created yet.
func (r *Recorder) patchSeries(ctx context.Context, e *entry, count int32) error {
	if e.name == "" {
		return nil
	}
	patch, err := json.Marshal(map[string]*eventsv1.EventSeries{"series": series(count, e.last)})
	if err != nil {
		return err
	}
	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: eventNamespace(e.regarding), Name: e.name}}
	return r.client.Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch))
}

// event is e's Event counting count occurrences, named for now.
func (r *Recorder) event(e *entry, count int32, now time.Time) *eventsv1.Event {
	related := e.related
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: eventNamespace(e.regarding), Name: eventName(e.regarding.Name, now)},
		EventTime:           metav1.NewMicroTime(e.first),
		Series:              series(count, e.last),
		ReportingController: ReportingController,
		ReportingInstance:   r.instance,
		Action:              e.action,
		Reason:              e.reason,
		Regarding:           e.regarding,
		Related:             &related,
		Note:                e.note,
		Type:                corev1.EventTypeWarning,
	}
}

// series is the series of an Event counting count occurrences, the last
// at last; nil for a single one, as the API wants.
func series(count int32, last time.Time) *eventsv1.EventSeries {
	if count < 2 {
		return nil
	}
	return &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(last)}
}

// eventNamespace is where an Event about ref lives: its namespace, or
// default for a cluster-scoped object.
func eventNamespace(ref corev1.ObjectReference) string {
	if ref.Namespace == "" {
		return metav1.NamespaceDefault
	}
	return ref.Namespace
}

// eventName names an Event about the object named name, as client-go
// does (name.nanoseconds), within the 253 bytes of a name.
func eventName(name string, now time.Time) string {
	return withSuffix(name, fmt.Sprintf(".%x", now.UnixNano()))
}

// withSuffix appends suffix to name, cutting name to keep within the 253
// bytes of a name; a cut that leaves a '-' or '.' at its end (which no
// label of a name may end with) drops them too.
func withSuffix(name, suffix string) string {
	if len(name)+len(suffix) <= 253 {
		return name + suffix
	}
	return strings.TrimRight(name[:253-len(suffix)], "-.") + suffix
}
