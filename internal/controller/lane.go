package controller

import (
	"context"
	"sync"

	"golang.org/x/time/rate"

	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/registry"
)

// Defaults of the background lane.
const (
	// DefaultScanRegistryRate is the requests per second background work
	// may send one registry.
	DefaultScanRegistryRate = 5
	// DefaultScanSlots is the inspections background work runs at once.
	DefaultScanSlots = 4
)

// maxLaneHosts bounds the registries the lane keeps a rate limiter for;
// beyond it the limiters start afresh.
const maxLaneHosts = 1024

// BackgroundLane is the inspector of background work (the fleet scan): it
// shares the webhook's inspector, and so its cache (one fetch per
// digest for reviews and scans alike), but runs at most Slots inspections
// at once, each only when Priority gives it a turn (reviews first), and
// paces its requests to each registry to Rate per second. Answers in the
// cache cost nothing and wait for nothing.
type BackgroundLane struct {
	// Inspector is the webhook's inspector.
	Inspector registry.Inspector
	// Priority gives reviews the first turn; nil: none.
	Priority *admission.Priority
	// Rate is the requests per second to one registry; 0:
	// DefaultScanRegistryRate.
	Rate float64
	// Slots is the inspections run at once; 0: DefaultScanSlots.
	Slots int

	once     sync.Once
	slots    chan struct{}
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

var _ admission.CachedInspector = (*BackgroundLane)(nil)

func (l *BackgroundLane) init() {
	l.once.Do(func() {
		if l.Rate <= 0 {
			l.Rate = DefaultScanRegistryRate
		}
		if l.Slots <= 0 {
			l.Slots = DefaultScanSlots
		}
		l.slots = make(chan struct{}, l.Slots)
		l.limiters = make(map[string]*rate.Limiter)
	})
}

// Inspect implements registry.Inspector.
func (l *BackgroundLane) Inspect(ctx context.Context, req registry.Request) (*registry.Inspection, error) {
	l.init()
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.slots }()
	if l.Priority != nil {
		if err := l.Priority.Background(ctx); err != nil {
			return nil, err
		}
	}
	req.Pace = l.pace
	return l.Inspector.Inspect(ctx, req)
}

// InspectCached implements admission.CachedInspector.
func (l *BackgroundLane) InspectCached(req registry.Request) (*registry.Inspection, bool) {
	if c, ok := l.Inspector.(admission.CachedInspector); ok {
		return c.InspectCached(req)
	}
	return nil, false
}

// pace waits for host's next request turn (registry.Request.Pace).
func (l *BackgroundLane) pace(ctx context.Context, host string) error {
	l.mu.Lock()
	lim := l.limiters[host]
	if lim == nil {
		if len(l.limiters) >= maxLaneHosts {
			clear(l.limiters)
		}
		lim = rate.NewLimiter(rate.Limit(l.Rate), max(1, int(l.Rate)))
		l.limiters[host] = lim
	}
	l.mu.Unlock()
	return lim.Wait(ctx)
}
