package admission

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"slimgate.dev/slimgate/internal/devcluster"
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
