package admission

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestPriorityBackgroundWaitsForReviews: background work waits while a
// review is in flight and goes as soon as it ends; with reviews that
// never end it goes after MaxDefer; with none it never waits.
func TestPriorityBackgroundWaitsForReviews(t *testing.T) {
	p := &Priority{MaxDefer: time.Hour}
	if err := p.Background(context.Background()); err != nil {
		t.Fatalf("idle: %v", err)
	}
	release, entered := make(chan struct{}), make(chan struct{})
	h := p.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	}))
	go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	<-entered
	if n := p.Reviews(); n != 1 {
		t.Fatalf("%d reviews in flight, want 1", n)
	}
	turn := make(chan error, 1)
	go func() { turn <- p.Background(context.Background()) }()
	select {
	case err := <-turn:
		t.Fatalf("background went during a review (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-turn:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("background still waiting after the review ended")
	}

	p.enter() // a review that does not end
	defer p.leave()
	p.MaxDefer = 20 * time.Millisecond
	start := time.Now()
	if err := p.Background(context.Background()); err != nil || time.Since(start) < p.MaxDefer {
		t.Fatalf("background: err %v after %s, want its turn after MaxDefer", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.MaxDefer = time.Hour
	if err := p.Background(ctx); err == nil {
		t.Fatal("background with a cancelled context had its turn")
	}
}
