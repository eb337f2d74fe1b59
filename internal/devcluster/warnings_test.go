package devcluster

import (
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"
)

var _ rest.WarningHandler = (*Warnings)(nil)

func TestWarningsTake(t *testing.T) {
	var w Warnings
	if got := w.Take(); len(got) != 0 {
		t.Errorf("fresh collector has %q", got)
	}
	w.HandleWarningHeader(299, "", "first")
	w.HandleWarningHeader(299, "agent", "second")
	if diff := cmp.Diff([]string{"first", "second"}, w.Take()); diff != "" {
		t.Errorf("first take (-want +got):\n%s", diff)
	}
	if got := w.Take(); len(got) != 0 {
		t.Errorf("second take returned %q, want nothing", got)
	}
	w.HandleWarningHeader(299, "", "third")
	if diff := cmp.Diff([]string{"third"}, w.Take()); diff != "" {
		t.Errorf("after take (-want +got):\n%s", diff)
	}
}

func TestWarningsConcurrent(t *testing.T) {
	var w Warnings
	var wg sync.WaitGroup
	var want []string
	for i := range 20 {
		text := fmt.Sprint("warning ", i)
		want = append(want, text)
		wg.Go(func() { w.HandleWarningHeader(299, "", text) })
	}
	wg.Wait()
	got := w.Take()
	sort.Strings(got)
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
