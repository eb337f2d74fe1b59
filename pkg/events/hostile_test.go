package events

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// heapAfterGC is the live heap once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// An image reference is as long as the requester makes it (the API server
// bounds only the request); the Events kept in memory and the occurrences
// queued for the writer must not keep such references whole. Each phase
// records n decisions about a distinct reference of refSize bytes, which
// a recorder that kept them would hold n*refSize of.
func TestLongImageReferencesBoundMemory(t *testing.T) {
	const n, refSize = 128, 512 << 10
	record := func(r *Recorder) {
		p := auditPolicy()
		for i := range n {
			ref := fmt.Sprintf("%04d", i) + strings.Repeat("a", refSize)
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-web"}}
			r.Record(context.Background(), Decision{Object: pod, Kind: podKind, Policy: p, Verdict: "allow", Reason: ReasonAudited,
				Action: ActionAdmit, Images: []ImageNote{{Image: ref, Reason: ReasonAudited, Note: "ships a compiler"}}})
		}
	}
	const limit = 8 << 20 // an eighth of what keeping them would take
	t.Run("counted events", func(t *testing.T) {
		c := fakeClient(t, interceptor.Funcs{})
		r, err := NewRecorder(Options{Client: c, MaxKeys: n, QueueSize: n})
		if err != nil {
			t.Fatal(err)
		}
		start(t, r)
		before := heapAfterGC()
		record(r)
		waitEvents(t, c, func(evs []eventsv1.Event) error {
			if len(evs) != n {
				return fmt.Errorf("%d events, want %d", len(evs), n)
			}
			return nil
		})
		if grew := int64(heapAfterGC()) - int64(before); grew > limit {
			t.Errorf("the heap grew by %d MiB keeping %d events about %d KiB references, want at most %d MiB", grew>>20, n, refSize>>10, limit>>20)
		}
		runtime.KeepAlive(r)
	})
	t.Run("queued occurrences", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		r, err := NewRecorder(Options{Client: fakeClient(t, stuckCreates(release)), QueueSize: n, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		start(t, r)
		before := heapAfterGC()
		record(r)
		if grew := int64(heapAfterGC()) - int64(before); grew > limit {
			t.Errorf("the heap grew by %d MiB queueing %d occurrences about %d KiB references, want at most %d MiB", grew>>20, n, refSize>>10, limit>>20)
		}
		runtime.KeepAlive(r)
	})
}
