package admission

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/policy"
)

// The evaluation memo is bounded by the bytes its results hold, not only
// by their number: results with many notes (hostile history) must not
// hold more than the byte bound, whatever their count.
func TestMemoBoundsBytes(t *testing.T) {
	var m memo[evalKey, policy.Result]
	note := strings.Repeat("n", 200)
	before := devcluster.HeapAfterGC()
	for i := range 200 {
		r := policy.Result{Image: fmt.Sprintf("registry.example/app:%d", i)}
		for j := range 1000 {
			r.Notes = append(r.Notes, fmt.Sprintf("%d %d %s", i, j, note))
		}
		k := evalKey{digest: fmt.Sprint(i)}
		m.put(k, r, resultSize(k, &r))
	}
	held := devcluster.HeapAfterGC() - before
	t.Logf("FIGURE memo: %d results of about 220 KB each: %.1f MiB held, %.1f MiB charged", 200, float64(held)/(1<<20), float64(m.bytes)/(1<<20))
	if held > 24<<20 {
		t.Errorf("the memo holds %.1f MiB, over its byte bound", float64(held)/(1<<20))
	}
	if ratio := float64(m.bytes) / float64(held); ratio < 0.5 || ratio > 2 {
		t.Errorf("the memo charges %.2f of the heap it holds, want 0.5 to 2", ratio)
	}
	runtime.KeepAlive(&m)
}

// Reviews that need the same evaluation at the same time share one: a
// burst of Pods naming a new image must not analyse its history once per
// Pod, side by side, and run out of time together.
func TestConcurrentEvaluationsAreShared(t *testing.T) {
	h, err := NewHandler(Options{Reader: fake.NewClientBuilder().Build(), Inspector: inspectFunc(nil)})
	if err != nil {
		t.Fatal(err)
	}
	p := newCompiledPolicy(t.Context(), &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u", ResourceVersion: "1"}})
	// Twenty maximal build steps: long enough that every caller below
	// arrives while the first evaluation still runs.
	step := "RUN /bin/sh -c " + strings.Repeat("apt-get install -y gcc make && ", (64<<10)/31)
	f := &image.Facts{Reference: "example.test/app:1", Digest: "sha256:" + strings.Repeat("ab", 32)}
	for i := range 20 {
		f.History = append(f.History, image.HistoryEntry{Index: i, CreatedBy: step, Layer: image.NoLayer})
	}
	const callers = 8
	start := make(chan struct{})
	results := make([]policy.Result, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			results[i] = h.evaluate(t.Context(), p, f)
		})
	}
	close(start)
	wg.Wait()
	if n := h.evaluated.Load(); n != 1 {
		t.Errorf("%d concurrent callers ran %d evaluations, want 1", callers, n)
	}
	for i, r := range results {
		if r.Verdict != policy.VerdictDeny || r.Incomplete() {
			t.Errorf("caller %d: %s", i, r.Summary())
		}
	}
}
