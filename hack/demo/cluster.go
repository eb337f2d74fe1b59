package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/policy"
)

// The namespace label that opts a namespace in (true) or out (false).
const optLabel = "slimgate.dev/enabled"

// Demo namespaces, one per way slimgate is used.
const (
	nsAudit     = "demo-audit"
	nsEnforce   = "demo-enforce"
	nsUntouched = "demo-untouched"
)

// cluster is everything the demo starts: the registry, kube-apiserver and
// etcd, and the webhook. stop tears all of it down.
type cluster struct {
	registry *httptest.Server
	env      *envtest.Environment
	client   client.Client
	warnings *warningLog
	// stopWebhook cancels the webhook and waits for it to return.
	stopWebhook func()
}

// host is the registry's host:port.
func (c *cluster) host() string { return strings.TrimPrefix(c.registry.URL, "http://") }

// stop stops the webhook, the API server and etcd, and the registry, in
// that order; it is safe on a partly started cluster.
func (c *cluster) stop() {
	if c.stopWebhook != nil {
		c.stopWebhook()
	}
	if c.env != nil {
		_ = c.env.Stop()
	}
	if c.registry != nil {
		c.registry.Close()
	}
}

// startRegistry serves an in-memory registry on loopback.
func (c *cluster) startRegistry() {
	c.registry = httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
}

// startControlPlane starts kube-apiserver and etcd with the CRD and the
// webhook configuration of config/, then the webhook in this process.
func (c *cluster) startControlPlane(ctx context.Context, o opts) error {
	assets := o.assets
	if assets == "" {
		// The script prints its progress on stderr when it has to build.
		cmd := exec.CommandContext(ctx, filepath.Join(o.root, "hack", "envtest-assets.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("finding kube-apiserver and etcd (hack/envtest-assets.sh): %w", err)
		}
		assets = strings.TrimSpace(string(out))
	}
	c.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(o.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(o.root, "config", "webhook")}},
		BinaryAssetsDirectory: assets,
	}
	cfg, err := c.env.Start()
	if err != nil {
		return fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	if err := c.startWebhook(ctx, cfg); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c.warnings = &warningLog{}
	user := rest.CopyConfig(cfg)
	user.WarningHandler = c.warnings
	c.client, err = client.New(user, client.Options{Scheme: scheme})
	return err
}

// startWebhook runs cmd/webhook/app in this process, serving on the port
// envtest registered in the ValidatingWebhookConfiguration, and waits
// until it reports ready.
func (c *cluster) startWebhook(ctx context.Context, cfg *rest.Config) error {
	probe, err := freeAddr()
	if err != nil {
		return err
	}
	wio := c.env.WebhookInstallOptions
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() {
		done <- app.Run(wctx, app.Options{
			Config: cfg, Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
			MetricsAddr: "0", ProbeAddr: probe, Concurrency: 4,
			DefaultTimeout: 10 * time.Second, TimeoutMargin: time.Second, ShutdownTimeout: 5 * time.Second,
			Registerer: prometheus.NewRegistry(),
			// The demo registry is on loopback: exempt exactly that
			// address from the private-network guard.
			EgressExempt: []string{c.host()},
		})
	}()
	c.stopWebhook = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	}
	return poll(ctx, 60*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("%w: the webhook stopped: %v", errGiveUp, err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+probe+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("webhook not ready: %s", resp.Status)
		}
		return nil
	})
}

// namespaces creates the three demo namespaces.
func (c *cluster) namespaces(ctx context.Context) error {
	for name, labels := range map[string]map[string]string{
		nsAudit:     nil,
		nsEnforce:   {optLabel: "true"},
		nsUntouched: {optLabel: "false"},
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if err := c.client.Create(ctx, ns); err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	return nil
}

// policies returns the two policies the demo installs, both the embedded
// default policy with a mode and a namespaceSelector: a cluster-wide audit
// of every namespace that made no choice, and enforcement where a
// namespace opted in. Both list the demo registry as plain HTTP.
func policies(registryHost string) []*v1alpha1.SlimImagePolicy {
	audit := policy.Default()
	audit.Name = "cluster-audit"
	audit.Spec.Mode = v1alpha1.ModeAudit
	audit.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: optLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
	enforce := policy.Default()
	enforce.Name = "opt-in-enforce"
	enforce.Spec.Mode = v1alpha1.ModeEnforce
	enforce.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{optLabel: "true"}}
	ps := []*v1alpha1.SlimImagePolicy{audit, enforce}
	for _, p := range ps {
		p.Spec.Registries.Insecure = []string{registryHost}
	}
	return ps
}

// install creates the policies and waits until the webhook reports each
// one Ready (it applies them from then on).
func (c *cluster) install(ctx context.Context, ps []*v1alpha1.SlimImagePolicy) error {
	for _, p := range ps {
		if err := c.client.Create(ctx, p); err != nil {
			return fmt.Errorf("creating policy %s: %w", p.Name, err)
		}
	}
	for _, p := range ps {
		err := poll(ctx, 20*time.Second, func() error {
			var got v1alpha1.SlimImagePolicy
			if err := c.client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, admission.ConditionReady)
			if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != got.Generation {
				return fmt.Errorf("policy %s is not Ready yet", p.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// errGiveUp makes poll stop retrying.
var errGiveUp = errors.New("giving up")

// poll calls f until it succeeds, fails with errGiveUp, ctx ends or within
// has passed.
func poll(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || errors.Is(err, errGiveUp) {
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

// freeAddr returns a loopback address nothing listens on yet.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// warningLog collects the admission warnings the API server returns.
type warningLog struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// take returns the warnings received since the last call.
func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}
