package admission

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxDefer is how long background work waits for reviews to end
// before it takes its turn anyway. Under a steady stream of reviews it
// bounds the background lane to a turn per slot every DefaultMaxDefer
// (BenchmarkFleetScan: with 2 s a 500-image scan under constant review
// traffic took 5.5 minutes; a review's CPU is microseconds, its time is
// the registry's, so a shorter wait costs reviews nothing measurable).
const DefaultMaxDefer = 250 * time.Millisecond

// Priority lets reviews go first: background work (the fleet scan) asks
// for a turn before each registry inspection, and gets it when no review
// is in flight, or after MaxDefer of waiting, so that a steady stream of
// reviews slows a scan down without stopping it. A review never waits for
// background work. The zero value is ready to use.
type Priority struct {
	// MaxDefer bounds one wait; 0: DefaultMaxDefer.
	MaxDefer time.Duration

	mu       sync.Mutex
	inFlight int
	idle     chan struct{} // closed when inFlight drops to 0; nil while 0
}

// Wrap counts the requests next serves as reviews in flight.
func (p *Priority) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.enter()
		defer p.leave()
		next.ServeHTTP(w, r)
	})
}

func (p *Priority) enter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight == 0 {
		p.idle = make(chan struct{})
	}
	p.inFlight++
}

func (p *Priority) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if p.inFlight == 0 {
		close(p.idle)
		p.idle = nil
	}
}

// Reviews returns the number of reviews in flight.
func (p *Priority) Reviews() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight
}

// Background waits for background work's turn: until no review is in
// flight, MaxDefer has passed, or ctx ends (its error).
func (p *Priority) Background(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	if idle == nil {
		return ctx.Err()
	}
	d := p.MaxDefer
	if d <= 0 {
		d = DefaultMaxDefer
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
