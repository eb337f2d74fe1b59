package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slimgate.dev/slimgate/cmd/webhook/app"
)

// defaults are the options with no flags and no POD_NAMESPACE.
func defaults() app.Options {
	return app.Options{
		Port:              9443,
		CertDir:           "/tmp/k8s-webhook-server/serving-certs",
		MetricsAddr:       ":8080",
		ProbeAddr:         ":8081",
		PullSecretAuth:    true,
		Concurrency:       16,
		MaxImages:         64,
		MaxRegistries:     16,
		DefaultTimeout:    10 * time.Second,
		TimeoutMargin:     time.Second,
		ShutdownTimeout:   15 * time.Second,
		ScanInterval:      time.Hour,
		ScanDebounce:      5 * time.Second,
		ScanRegistryRate:  5,
		CertSecretName:    "slimgate-webhook-tls",
		WebhookConfigName: "slimgate",
		ServiceName:       "slimgate-webhook",
		Namespace:         "slimgate-system",
	}
}

func TestFlagsToOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		podNS  string
		change func(*app.Options)
	}{
		{name: "defaults", change: func(*app.Options) {}},
		{
			name:   "namespace from the downward API",
			podNS:  "gate",
			change: func(o *app.Options) { o.Namespace = "gate" },
		},
		{
			name:   "flag beats POD_NAMESPACE",
			args:   []string{"--namespace=other"},
			podNS:  "gate",
			change: func(o *app.Options) { o.Namespace = "other" },
		},
		{
			name: "cert rotation",
			args: []string{"--cert-rotation", "--cert-secret-name=tls", "--webhook-config-name=gate", "--service-name=svc", "--cert-dir=/certs"},
			change: func(o *app.Options) {
				o.CertRotation, o.CertSecretName, o.WebhookConfigName, o.ServiceName, o.CertDir = true, "tls", "gate", "svc", "/certs"
			},
		},
		{
			name: "background scan",
			args: []string{"--scan-interval=10m", "--scan-debounce=1s", "--scan-registry-rate=0.5"},
			change: func(o *app.Options) {
				o.ScanInterval, o.ScanDebounce, o.ScanRegistryRate = 10*time.Minute, time.Second, 0.5
			},
		},
		{
			name:   "scan off",
			args:   []string{"--scan-interval=0"},
			change: func(o *app.Options) { o.ScanInterval = 0 },
		},
		{
			name:   "digest pinning",
			args:   []string{"--pin-digests"},
			change: func(o *app.Options) { o.PinDigests = true },
		},
		{
			name:   "client certificates required",
			args:   []string{"--cert-dir=/certs", "--client-ca-name=client-ca/ca.crt"},
			change: func(o *app.Options) { o.CertDir, o.ClientCAName = "/certs", "client-ca/ca.crt" },
		},
		{
			name: "server and registry knobs",
			args: []string{
				"--webhook-host=127.0.0.1", "--webhook-port=10250", "--metrics-bind-address=0", "--health-probe-bind-address=:9090",
				"--pull-secret-auth=false", "--inspect-concurrency=2", "--default-timeout=5s", "--timeout-margin=500ms",
				"--shutdown-timeout=1m", "--zap-log-level=debug", "--max-images-per-review=8", "--max-registries-per-review=2",
			},
			change: func(o *app.Options) {
				o.Host, o.Port, o.MetricsAddr, o.ProbeAddr = "127.0.0.1", 10250, "0", ":9090"
				o.PullSecretAuth, o.Concurrency = false, 2
				o.MaxImages, o.MaxRegistries = 8, 2
				o.DefaultTimeout, o.TimeoutMargin, o.ShutdownTimeout = 5*time.Second, 500*time.Millisecond, time.Minute
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.podNS)
			want := defaults()
			tc.change(&want)
			var got *app.Options
			var stderr bytes.Buffer
			code := execute(context.Background(), tc.args, &stderr, func(_ context.Context, o app.Options) error {
				got = &o
				return nil
			})
			if code != 0 {
				t.Fatalf("exit status %d, stderr:\n%s", code, stderr.String())
			}
			if got == nil {
				t.Fatal("run was not called")
			}
			if diff := cmp.Diff(want, *got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	failing := func(context.Context, app.Options) error { return errors.New("boom") }
	for _, tc := range []struct {
		name   string
		args   []string
		run    func(context.Context, app.Options) error
		want   int
		stderr string
	}{
		{name: "unknown flag", args: []string{"--no-such-flag"}, want: 2, stderr: "no-such-flag"},
		{name: "bad value", args: []string{"--webhook-port=https"}, want: 2, stderr: "webhook-port"},
		{name: "stray argument", args: []string{"serve"}, want: 2, stderr: "unexpected arguments"},
		{name: "run fails", run: failing, want: 1, stderr: "boom"},
		{name: "help", args: []string{"-h"}, want: 0, stderr: "--cert-rotation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run
			called := false
			if run == nil {
				run = func(context.Context, app.Options) error { called = true; return nil }
			}
			var stderr bytes.Buffer
			if got := execute(context.Background(), tc.args, &stderr, run); got != tc.want {
				t.Errorf("exit status %d, want %d", got, tc.want)
			}
			if tc.want == 2 && called {
				t.Error("run was called despite bad arguments")
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.stderr, stderr.String())
			}
		})
	}
}
