package scan

import (
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	var b strings.Builder
	now := time.Unix(0, 0)
	p := newProgress(&b, func() time.Time { return now })
	p.update(1, 10)
	if b.Len() != 0 {
		t.Fatalf("printed %q before a second passed", b.String())
	}
	now = now.Add(progressAfter)
	p.update(2, 10)
	now = now.Add(progressEvery / 2)
	p.update(3, 10) // too soon after the last
	now = now.Add(progressEvery)
	p.update(4, 10)
	p.update(10, 10) // the last is always shown
	want := "\rscanning: 2 of 10 workloads judged\rscanning: 4 of 10 workloads judged\rscanning: 10 of 10 workloads judged"
	if b.String() != want {
		t.Errorf("progress printed %q, want %q", b.String(), want)
	}
	b.Reset()
	p.clear()
	if b.String() != "\r\033[K" {
		t.Errorf("clear printed %q, want the line erased", b.String())
	}
	b.Reset()
	p.clear()
	var none *progress
	none.update(1, 1)
	none.clear()
	if b.Len() != 0 {
		t.Errorf("printed %q after the line was cleared", b.String())
	}
}
