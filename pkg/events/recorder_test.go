package events

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"slimgate.dev/slimgate/api/v1alpha1"
)

func fakeClient(t *testing.T, funcs interceptor.Funcs) client.WithWatch {
	t.Helper()
	return fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithInterceptorFuncs(funcs).Build()
}

// start runs r's writer for the rest of the test.
func start(t *testing.T, r *Recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Start(ctx); err != nil {
			t.Errorf("Start: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func auditPolicy() *v1alpha1.SlimImagePolicy {
	return &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "pol", UID: "uid-pol"}, Spec: v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeAudit}}
}

// audited is an Audit decision about two images of a Pod.
func audited(pod *corev1.Pod) Decision {
	return Decision{Object: pod, Kind: podKind, Policy: auditPolicy(), Verdict: "allow", Reason: ReasonAudited, Action: ActionAdmit,
		Note: "both", Images: []ImageNote{{Image: "a:1", Reason: ReasonAudited, Note: "a ships a compiler"}, {Image: "b:1", Reason: ReasonAudited, Note: "b ships a compiler"}}}
}

// waitEvents polls c until check accepts its Events in namespace ns.
func waitEvents(t *testing.T, c client.Reader, check func([]eventsv1.Event) error) []eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace("ns")); err != nil {
			t.Fatal(err)
		}
		err := check(list.Items)
		if err == nil {
			return list.Items
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One Event per image, each counting every decision within the interval,
// with the fields events.k8s.io/v1 asks for; an Event deleted meanwhile is
// created again with the whole count.
func TestRecorderWritesOneCountedEventPerImage(t *testing.T) {
	c := fakeClient(t, interceptor.Funcs{})
	r, err := NewRecorder(Options{Client: c, Instance: "slimgate-0", FlushInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-web"}}
	for range 52 {
		r.Record(context.Background(), audited(pod))
	}
	counted := func(n int32) func([]eventsv1.Event) error {
		return func(evs []eventsv1.Event) error {
			if len(evs) != 2 {
				return fmt.Errorf("%d events, want 2", len(evs))
			}
			for _, e := range evs {
				if e.Series == nil || e.Series.Count != n {
					return fmt.Errorf("event %s series %+v, want count %d", e.Name, e.Series, n)
				}
			}
			return nil
		}
	}
	evs := waitEvents(t, c, counted(52))
	notes := map[string]bool{}
	for _, e := range evs {
		notes[e.Note] = true
		want := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web", UID: "uid-web"}
		if e.Regarding != want || e.Related == nil || e.Related.Name != "pol" || e.Related.UID != "uid-pol" ||
			e.Type != corev1.EventTypeWarning || e.Reason != ReasonAudited || e.Action != ActionAdmit ||
			e.ReportingController != "slimgate" || e.ReportingInstance != "slimgate-0" || e.EventTime.IsZero() ||
			e.Series.LastObservedTime.Before(&e.EventTime) {
			t.Errorf("event %+v", e)
		}
	}
	if !notes["a ships a compiler"] || !notes["b ships a compiler"] {
		t.Errorf("notes %v, want one per image", notes)
	}

	// The API server dropped the Events (their TTL): the next count
	// creates them again.
	for _, e := range evs {
		if err := c.Delete(context.Background(), &e); err != nil {
			t.Fatal(err)
		}
	}
	r.Record(context.Background(), audited(pod))
	waitEvents(t, c, counted(53))
}

// stuckCreates makes every Create wait until release is closed or its
// context ends.
func stuckCreates(release <-chan struct{}) interceptor.Funcs {
	return interceptor.Funcs{Create: func(ctx context.Context, _ client.WithWatch, _ client.Object, _ ...client.CreateOption) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}}
}

// Record never waits for the API server: with the writer stuck, what does
// not fit in the queue is dropped and counted, and the reviews go on.
func TestRecordNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	r, err := NewRecorder(Options{Client: fakeClient(t, stuckCreates(release)), QueueSize: 8, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	goroutines := runtime.NumGoroutine()
	const decisions = 1000
	began := time.Now()
	for i := range decisions {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("p", i)}}
		r.Record(context.Background(), audited(pod))
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("%d decisions took %s to record with the writer stuck", decisions, took)
	}
	// Two images each; the writer holds one, the queue eight.
	dropped := value(t, r.Dropped().WithLabelValues(DropQueueFull))
	if dropped < 2*decisions-8-1 || dropped > 2*decisions-8 {
		t.Errorf("dropped %v of %d occurrences, want all but the queue's 8 and the one being written", dropped, 2*decisions)
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Errorf("goroutines went from %d to %d while recording", goroutines, n)
	}
}

// A refused object's retries count on one Event: each attempt has a new
// UID, which the Event does not name.
func TestRefusedRetriesShareAnEvent(t *testing.T) {
	c := fakeClient(t, interceptor.Funcs{})
	r, err := NewRecorder(Options{Client: c, FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	p := auditPolicy()
	p.Spec.Mode = v1alpha1.ModeEnforce
	for i := range 5 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fat", UID: types.UID(fmt.Sprint("attempt-", i))}}
		r.Record(context.Background(), Decision{Object: pod, Kind: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Policy: p,
			Verdict: "deny", Reason: ReasonRejected, Action: ActionDeny, Images: []ImageNote{{Image: "fat:1", Reason: ReasonRejected, Note: "n"}}})
	}
	waitEvents(t, c, func(evs []eventsv1.Event) error {
		if len(evs) != 1 || evs[0].Series == nil || evs[0].Series.Count != 5 || evs[0].Regarding.UID != "" {
			return fmt.Errorf("events %+v, want one counting 5 without a UID", evs)
		}
		return nil
	})
}

// WriteOnce writes an Event at once, under a name every replica derives
// alike: the second write of the same thing finds it and says so.
func TestWriteOnce(t *testing.T) {
	c := fakeClient(t, interceptor.Funcs{})
	r, err := NewRecorder(Options{Client: c, Instance: "slimgate-1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewRecorder(Options{Client: c, Instance: "slimgate-2"})
	if err != nil {
		t.Fatal(err)
	}
	pod := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "web-x7k2q", UID: "uid-web"}
	note := ImageNote{Image: "a:1", Reason: ReasonUnreviewed, Note: "created without a review"}
	for i, w := range []struct {
		r    *Recorder
		note ImageNote
		want bool
	}{{r, note, true}, {other, note, false}, {r, note, false}, {other, ImageNote{Image: "b:1", Reason: ReasonUnreviewed, Note: "n"}, true}} {
		created, err := w.r.WriteOnce(context.Background(), pod, auditPolicy(), w.note, ActionAdmit)
		if err != nil || created != w.want {
			t.Errorf("write %d: created %v, %v; want %v", i, created, err, w.want)
		}
	}
	evs := waitEvents(t, c, func(evs []eventsv1.Event) error {
		if len(evs) != 2 {
			return fmt.Errorf("%d events, want 2", len(evs))
		}
		return nil
	})
	for _, e := range evs {
		if e.Regarding != pod || e.Reason != ReasonUnreviewed || e.Series != nil || e.Related == nil || e.Related.Name != "pol" {
			t.Errorf("event %+v", e)
		}
	}
	if _, err := (&Recorder{}).WriteOnce(context.Background(), pod, auditPolicy(), note, ActionAdmit); err == nil {
		t.Error("a recorder without a client wrote an event")
	}
}
