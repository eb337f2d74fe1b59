package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// peakHeap samples the heap in use until stop is called, which returns
// the highest figure seen above the heap at the start (after a GC). The
// GC runs at 10% growth meanwhile, so that garbage waiting for it stays
// small beside what is in use.
func peakHeap(t *testing.T) (stop func() uint64) {
	t.Helper()
	old := debug.SetGCPercent(10)
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		debug.SetGCPercent(old)
		if p := peak.Load(); p > base {
			return p - base
		}
		return 0
	}
}

// configServer serves, for any tag, a distinct manifest whose config is
// cfg, and cfg for any blob.
func configServer(t *testing.T, cfg []byte) string {
	t.Helper()
	desc := configDescriptor(cfg)
	host, _ := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w.Write(cfg)
			return
		}
		tag := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		m, _ := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2, Config: desc, Annotations: map[string]string{"tag": tag}})
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Write(m)
	})
	return host
}

// fullConfig is a config of about size bytes within every count cap: 1000
// history entries with long lines.
func fullConfig(size int) []byte {
	line := strings.Repeat("x", size/1000-64)
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64", History: make([]v1.History, 1000)}
	for i := range cfg.History {
		cfg.History[i] = v1.History{CreatedBy: fmt.Sprintf("RUN %d %s", i, line), EmptyLayer: true}
	}
	b, _ := json.Marshal(cfg)
	return b
}

// TestConfigBytesInFlightAreBounded: 16 reviews at once, each reading a
// config just under the 8 MiB cap, keep the heap within the process-wide
// bound on configs in flight (plus slack for the rest), and all finish
// before their deadline.
func TestConfigBytesInFlightAreBounded(t *testing.T) {
	const bound = 64 << 20
	cfg := fullConfig(8<<20 - 16<<10)
	if len(cfg) > 8<<20 || len(cfg) < 8<<20-64<<10 {
		t.Fatalf("config of %d bytes, want just under 8 MiB", len(cfg))
	}
	host := configServer(t, cfg)
	r, _ := newTestRemote(t, Options{CacheBytes: 1 << 20}) // nothing as large is cached
	stop := peakHeap(t)
	deadline := time.Now().Add(30 * time.Second)
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			defer cancel()
			_, errs[i] = r.Inspect(ctx, plainRequest(fmt.Sprintf("%s/app:t%d", host, i), host))
		})
	}
	wg.Wait()
	peak := stop()
	t.Logf("peak heap above the start: %d MiB for 16 configs of %d bytes (bound %d MiB)", peak>>20, len(cfg), bound>>20)
	for i, err := range errs {
		if err != nil {
			t.Errorf("inspection %d: %v", i, err)
		}
	}
	if time.Now().After(deadline) {
		t.Errorf("the inspections ended after their deadline")
	}
	if slack := uint64(24 << 20); peak > bound+slack {
		t.Errorf("peak heap %d MiB above the start, want at most the %d MiB bound plus %d MiB", peak>>20, bound>>20, slack>>20)
	}
}

// TestConfigDecodingIsBounded: a config whose few bytes per JSON value
// would decode to many times its size is refused before decoding.
func TestConfigDecodingIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"os":"linux","architecture":"amd64","history":[{}`)
	for b.Len() < 8<<20-64 {
		b.WriteString(`,{}`)
	}
	b.WriteString(`]}`)
	host := configServer(t, []byte(b.String()))
	r, _ := newTestRemote(t, Options{})
	stop := peakHeap(t)
	_, err := r.Inspect(context.Background(), plainRequest(host+"/app:v1", host))
	peak := stop()
	wantReason(t, err, ReasonTooLarge)
	t.Logf("peak heap above the start: %d MiB for a config of %d bytes", peak>>20, b.Len())
	if limit := uint64(40 << 20); peak > limit {
		t.Errorf("peak heap %d MiB above the start, want at most %d MiB", peak>>20, limit>>20)
	}
}

// TestWaitingForConfigBytesEndsWithTheContext: while the bound is taken by
// a config that never finishes arriving, another inspection waits only
// until its own deadline, and the bound is given back when the first one
// fails.
func TestWaitingForConfigBytesEndsWithTheContext(t *testing.T) {
	big := fullConfig(4 << 20)
	small := []byte(`{"architecture":"amd64","os":"linux","config":{}}`)
	sending := make(chan struct{}, 1)
	host, _ := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		bigImage := strings.Contains(r.URL.Path, "/big/")
		cfg := small
		if bigImage {
			cfg = big
		}
		if strings.Contains(r.URL.Path, "/blobs/") {
			if !bigImage {
				w.Write(cfg)
				return
			}
			w.Write(cfg[:1<<20]) // a quarter, then nothing
			w.(http.Flusher).Flush()
			sending <- struct{}{}
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Write(manifestFor(configDescriptor(cfg)))
	})
	r, _ := newTestRemote(t, Options{MaxConfigBytesInFlight: 4 << 20})
	bigDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := r.Inspect(ctx, plainRequest(host+"/big:v1", host))
		bigDone <- err
	}()
	<-sending
	for wait := time.Now().Add(2 * time.Second); r.configs.TryAcquire(1); { // until the stalled config holds the bound
		r.configs.Release(1)
		if time.Now().After(wait) {
			t.Fatal("the stalled config never took the bound")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Inspect(ctx, plainRequest(host+"/small:v1", host))
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the waiting inspection took %s, past its 300ms deadline", took)
	}
	wantReason(t, err, ReasonTimeout)
	wantReason(t, <-bigDone, ReasonTimeout)
	// The bound is free again.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := r.Inspect(ctx2, plainRequest(host+"/small:v2", host)); err != nil {
		t.Errorf("after the stalled config failed: %v", err)
	}
}

func TestCheckElements(t *testing.T) {
	many := func(sep string, n int) string { return strings.Repeat(sep, n) }
	for _, tc := range []struct {
		name string
		doc  string
		ok   bool
	}{
		{"at the cap", "[" + many("1,", maxElements-1) + "1]", true},
		{"over the cap", "[" + many("1,", maxElements) + "1]", false},
		{"empty objects", "[" + many("{},", maxElements/2) + "{}]", false},
		{"separators inside strings do not count", `["` + many(",[{", maxElements) + `"]`, true},
		{"escaped quotes stay inside the string", `["\"` + many(",", maxElements+1) + `\\"]`, true},
		{"an escaped backslash ends before the quote", `["\\",` + many("1,", maxElements) + `1]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkElements([]byte(tc.doc), "doc")
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && reasonOf(err) != ReasonTooLarge {
				t.Errorf("reason %s, want TooLarge", reasonOf(err))
			}
		})
	}
}
