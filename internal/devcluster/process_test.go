package devcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/api/v1alpha1"
)

func TestProcessStop(t *testing.T) {
	boom := errors.New("boom")
	p := Go(context.Background(), func(ctx context.Context) error {
		<-ctx.Done()
		return boom
	})
	if p.Err() != nil {
		t.Errorf("Err while running = %v, want nil", p.Err())
	}
	if err := p.Stop(5 * time.Second); !errors.Is(err, boom) {
		t.Errorf("Stop = %v, want the function's error", err)
	}
	if !isDone(p) {
		t.Error("Done not closed after Stop")
	}
}

func TestProcessStopTimesOut(t *testing.T) {
	release := make(chan struct{})
	p := Go(context.Background(), func(context.Context) error {
		<-release
		return nil
	})
	err := p.Stop(50 * time.Millisecond)
	close(release)
	if !errors.Is(err, ErrNotStopped) {
		t.Errorf("Stop = %v, want ErrNotStopped", err)
	}
}

func isDone(p *Process) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

func TestWaitReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "[-]informers", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := WaitReady(context.Background(), srv.URL, 10*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d probes, want 3", n)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	err := WaitReady(context.Background(), srv.URL, 200*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("WaitReady = %v, want a timeout naming the last status", err)
	}
	if errors.Is(err, ErrStopped) {
		t.Errorf("WaitReady = %v, must not be ErrStopped", err)
	}
}

func TestWaitReadyProcessStopped(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	failed := errors.New("bind failed")
	p := Go(context.Background(), func(context.Context) error { return failed })
	err = WaitReady(context.Background(), "http://"+addr+"/readyz", 10*time.Second, p)
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), failed.Error()) {
		t.Errorf("WaitReady = %v, want ErrStopped naming the cause", err)
	}
}

func TestWaitReadyContextEnds(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitReady(ctx, "http://"+addr+"/readyz", 10*time.Second, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitReady = %v, want context.Canceled", err)
	}
}

func TestFreeAddrAndPort(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on FreeAddr's %s: %v", addr, err)
	}
	l.Close()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Errorf("FreePort = %d", port)
	}
}

// WaitGoroutines fails while more goroutines run than it allows, with the
// stack of each (the one left behind among them), and returns once the
// count is down to what it allows.
func TestWaitGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	release := make(chan struct{})
	go leftBehind(release)
	// A test always runs at least two goroutines: its own and leftBehind.
	err := WaitGoroutines(1, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "devcluster.leftBehind") {
		t.Errorf("more goroutines than allowed: %v, want an error with their stacks", err)
	}
	close(release)
	if err := WaitGoroutines(base, 5*time.Second); err != nil {
		t.Error(err)
	}
}

func leftBehind(release <-chan struct{}) { <-release }

// HeapAfterGC counts what is held, not what was allocated.
func TestHeapAfterGC(t *testing.T) {
	before := HeapAfterGC()
	held := make([]byte, 32<<20)
	// Some slack: what earlier tests left may be freed meanwhile.
	if grown := int64(HeapAfterGC()) - int64(before); grown < 24<<20 {
		t.Errorf("holding 32 MiB, the heap grew by %d bytes", grown)
	}
	runtime.KeepAlive(held)
	if grown := int64(HeapAfterGC()) - int64(before); grown > 8<<20 {
		t.Errorf("32 MiB no longer held, yet the heap is %d bytes above where it started", grown)
	}
}

func TestAssetsDir(t *testing.T) {
	// root is a stand-in repository whose script prints a folder.
	root := t.TempDir()
	script := filepath.Join(root, "hack", "envtest-assets.sh")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho '  /from/script '\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.MkdirAll(filepath.Join(broken, "hack"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "hack", "envtest-assets.sh"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		e         Env
		want      string
		wantErr   bool
	}{
		{name: "given", env: "/from/env", e: Env{Root: root, Assets: "/given"}, want: "/given"},
		{name: "environment variable", env: "/from/env", e: Env{Root: root}, want: "/from/env"},
		{name: "script", e: Env{Root: root}, want: "/from/script"},
		{name: "script fails", e: Env{Root: broken}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBEBUILDER_ASSETS", tc.env)
			got, err := tc.e.AssetsDir(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("AssetsDir error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("AssetsDir = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	e := Env{Root: "repo", ExtraCRDDirs: []string{"extra"}}
	env := e.Environment("/assets")
	if got, want := strings.Join(env.CRDDirectoryPaths, ","), filepath.Join("repo", "config", "crd", "bases")+",extra"; got != want {
		t.Errorf("CRD paths %s, want %s", got, want)
	}
	if !env.ErrorIfCRDPathMissing || env.BinaryAssetsDirectory != "/assets" {
		t.Errorf("environment %+v", env)
	}
	if len(env.WebhookInstallOptions.Paths) != 0 {
		t.Errorf("webhook paths %v without Webhooks", env.WebhookInstallOptions.Paths)
	}
	e.Webhooks = true
	if got := e.Environment("/assets").WebhookInstallOptions.Paths; len(got) != 1 || got[0] != filepath.Join("repo", "config", "webhook") {
		t.Errorf("webhook paths %v", got)
	}
}

func TestNewScheme(t *testing.T) {
	s, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, gvk := range []string{"v1/Pod", "slimgate.dev/v1alpha1/SlimImagePolicy"} {
		found := false
		for k := range s.AllKnownTypes() {
			if k.GroupVersion().String()+"/"+k.Kind == gvk {
				found = true
			}
		}
		if !found {
			t.Errorf("scheme lacks %s", gvk)
		}
	}
}

func TestPoll(t *testing.T) {
	notYet := errors.New("not yet")
	for _, tc := range []struct {
		name      string
		succeedAt int32 // 0: never
		giveUpAt  int32 // 0: never
		within    time.Duration
		wantCalls int32
		wantErr   error
	}{
		{name: "third call succeeds", succeedAt: 3, within: 10 * time.Second, wantCalls: 3},
		{name: "gives up on the second call", giveUpAt: 2, within: 10 * time.Second, wantCalls: 2, wantErr: ErrGiveUp},
		{name: "times out", within: 250 * time.Millisecond, wantErr: notYet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			err := Poll(context.Background(), tc.within, func() error {
				n := calls.Add(1)
				switch n {
				case tc.succeedAt:
					return nil
				case tc.giveUpAt:
					return fmt.Errorf("%w: broken", ErrGiveUp)
				}
				return notYet
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Poll = %v, want %v", err, tc.wantErr)
			}
			if tc.wantCalls > 0 && calls.Load() != tc.wantCalls {
				t.Errorf("%d calls, want %d", calls.Load(), tc.wantCalls)
			}
			if errors.Is(tc.wantErr, notYet) && !strings.Contains(err.Error(), "still failing after") {
				t.Errorf("timeout error %q does not say how long it tried", err)
			}
		})
	}
}

func TestPollContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Poll(ctx, 10*time.Second, func() error { return errors.New("not yet") })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Poll = %v, want context.Canceled", err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	t.Setenv("DEVCLUSTER_TEST_LOGS", "")
	NewLogger(&buf, "DEVCLUSTER_TEST_LOGS").Info("hello", "key", "value")
	if !strings.Contains(buf.String(), "hello") || !strings.Contains(buf.String(), "value") {
		t.Errorf("log %q lacks the message", buf.String())
	}
}

func TestWaitPolicyReady(t *testing.T) {
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	policy := func(name string, generation int64, cond *metav1.Condition) *v1alpha1.SlimImagePolicy {
		p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: generation}}
		if cond != nil {
			p.Status.Conditions = []metav1.Condition{*cond}
		}
		return p
	}
	ready := func(status metav1.ConditionStatus, observed int64) *metav1.Condition {
		return &metav1.Condition{Type: "Ready", Status: status, ObservedGeneration: observed, Reason: "Test", LastTransitionTime: metav1.Now()}
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		policy("ready", 2, ready(metav1.ConditionTrue, 2)),
		policy("stale", 3, ready(metav1.ConditionTrue, 2)),
		policy("false", 1, ready(metav1.ConditionFalse, 1)),
		policy("new", 1, nil),
	).Build()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		wantErr string
	}{
		{"ready", ""},
		{"stale", "not Ready"},
		{"false", "not Ready"},
		{"new", "not Ready"},
		{"absent", "not found"},
	} {
		err := WaitPolicyReady(ctx, c, tc.name, "Ready", 250*time.Millisecond)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.wantErr)
		}
	}
}
