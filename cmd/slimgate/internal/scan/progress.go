package scan

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Timing of the progress line.
const (
	// progressAfter is how long a scan runs before the line shows.
	progressAfter = time.Second
	// progressEvery is how often the line is rewritten at most.
	progressEvery = 100 * time.Millisecond
)

// progress is the line a scan rewrites on a terminal as it judges
// workloads, once it has run for progressAfter. A nil *progress prints
// nothing.
type progress struct {
	w     io.Writer
	now   func() time.Time
	start time.Time

	mu    sync.Mutex
	last  time.Time
	shown bool
}

// newProgress starts the clock of a progress line.
func newProgress(w io.Writer, now func() time.Time) *progress {
	return &progress{w: w, now: now, start: now()}
}

// update is fleet.Scanner.Progress: done of total workloads judged.
func (p *progress) update(done, total int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.now()
	if t.Sub(p.start) < progressAfter || (p.shown && t.Sub(p.last) < progressEvery && done < total) {
		return
	}
	fmt.Fprintf(p.w, "\rscanning: %d of %d workloads judged", done, total)
	p.shown, p.last = true, t
}

// clear erases the line, if it was shown.
func (p *progress) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
