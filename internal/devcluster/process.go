package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"
)

// ErrNotStopped is returned by Process.Stop when the process did not
// return in time.
var ErrNotStopped = errors.New("did not stop in time")

// ErrStopped is returned by WaitReady when the process returned before it
// was ready.
var ErrStopped = errors.New("stopped before it was ready")

// ErrGiveUp makes Poll stop retrying when the error of Poll's function
// wraps it; Poll then returns that error.
var ErrGiveUp = errors.New("giving up")

// Poll calls f every 100ms until it succeeds, returns an error wrapping
// ErrGiveUp, ctx ends or within has passed; it returns nil, f's last
// error, or ctx's.
func Poll(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || errors.Is(err, ErrGiveUp) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Process is a function running in its own goroutine until its context
// is cancelled, such as the webhook's app.Run.
type Process struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Go runs run in the background with a context derived from ctx, which
// Stop cancels.
func Go(ctx context.Context, run func(context.Context) error) *Process {
	ctx, cancel := context.WithCancel(ctx)
	p := &Process{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = run(ctx)
	}()
	return p
}

// Done is closed when the function has returned.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what the function returned; nil while it runs.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop cancels the function's context and waits up to within for it to
// return. It returns the function's error, or ErrNotStopped.
func (p *Process) Stop(within time.Duration) error {
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		return fmt.Errorf("waited %s: %w", within, ErrNotStopped)
	}
}

// WaitReady polls url until it answers 200 OK. It fails when ctx ends,
// when within has passed (naming the last answer), or, with ErrStopped,
// when p (optional) returns first.
func WaitReady(ctx context.Context, url string, within time.Duration, p *Process) error {
	var stopped <-chan struct{}
	if p != nil {
		stopped = p.Done()
	}
	deadline := time.Now().Add(within)
	for {
		select {
		case <-stopped:
			return fmt.Errorf("%w: %w", ErrStopped, p.Err())
		default:
		}
		last := probe(ctx, url)
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready at %s after %s: %s", url, within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe asks url once and describes why it is not ready, or returns ""
// on 200 OK.
func probe(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}

// FreeAddr returns a loopback host:port nothing listens on at the moment.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreePort returns a loopback port nothing listens on at the moment.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitGoroutines waits up to within for this process to run at most
// atMost goroutines, as it did before a test started them. When the count
// does not fall, the error says by how much and holds every goroutine's
// stack.
func WaitGoroutines(atMost int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= atMost {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines still running after %s, want at most %d:\n%s", n, within, atMost, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HeapAfterGC is this process's live heap (runtime.MemStats.HeapAlloc)
// after collecting garbage twice (an object with a finalizer outlives the
// first collection).
func HeapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
