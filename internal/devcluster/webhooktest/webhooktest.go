// Package webhooktest runs slimgate's webhook (cmd/webhook/app) in the test
// process, against an API server started with devcluster, as the webhook
// app's tests, the end-to-end suite and the deploy suite do. Main starts
// what an end-to-end package's tests share (a Suite: the control plane,
// the webhook, the sample apps' registries and a client); Eventually
// polls for a state within a test; PodReview and Client post reviews to
// the webhook as the API server would.
//
// It is a package of its own, not part of devcluster, because it imports
// the webhook: the tests of the packages the webhook is built from use
// devcluster too.
package webhooktest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
)

// ReadyWithin is how long Run and WaitReady wait for /readyz: the
// webhook's caches sync and its certificates appear within it.
const ReadyWithin = time.Minute

// StopWithin is how long a webhook gets to return once its context ends:
// its ShutdownTimeout and a margin.
const StopWithin = 30 * time.Second

// Options returns the options of a webhook that talks to the API server
// at cfg and serves reviews on host:port with the tls.crt and tls.key in
// certDir: probes on a free loopback port, no metrics server, pull-secret
// auth on (as the webhook's flags default to), a 10 s review timeout.
func Options(cfg *rest.Config, host string, port int, certDir string) (app.Options, error) {
	probe, err := devcluster.FreeAddr()
	if err != nil {
		return app.Options{}, err
	}
	return app.Options{
		Config: cfg, Host: host, Port: port, CertDir: certDir,
		MetricsAddr: "0", ProbeAddr: probe, PullSecretAuth: true, Concurrency: 4,
		DefaultTimeout: 10 * time.Second, TimeoutMargin: time.Second, ShutdownTimeout: 5 * time.Second,
	}, nil
}

// Run runs app.Run with o in the background and waits until its /readyz
// answers. When that fails it stops the webhook before returning; else the
// caller stops it.
func Run(ctx context.Context, o app.Options) (*devcluster.Process, error) {
	p := devcluster.Go(ctx, func(ctx context.Context) error { return app.Run(ctx, o) })
	if err := devcluster.WaitReady(ctx, readyURL(o), ReadyWithin, p); err != nil {
		_ = p.Stop(StopWithin)
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return p, nil
}

// Start runs app.Run with o in the background for the rest of the test,
// without waiting for it to be ready. Its context ends with the test's;
// a cleanup then waits for it and fails the test if it returns an error
// or does not return within StopWithin.
func Start(t testing.TB, o app.Options) *devcluster.Process {
	t.Helper()
	p := devcluster.Go(t.Context(), func(ctx context.Context) error { return app.Run(ctx, o) })
	t.Cleanup(func() {
		err := p.Stop(StopWithin)
		switch {
		case errors.Is(err, devcluster.ErrNotStopped):
			t.Errorf("the webhook did not return within %s of its context ending", StopWithin)
		case err != nil:
			t.Errorf("the webhook returned %v", err)
		}
	})
	return p
}

// WaitReady waits up to ReadyWithin for the /readyz of the webhook p runs
// with o; it fails with devcluster.ErrStopped when p returns first.
func WaitReady(ctx context.Context, o app.Options, p *devcluster.Process) error {
	return devcluster.WaitReady(ctx, readyURL(o), ReadyWithin, p)
}

func readyURL(o app.Options) string { return "http://" + o.ProbeAddr + "/readyz?verbose" }
