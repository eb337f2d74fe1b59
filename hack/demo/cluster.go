package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
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
	warnings *devcluster.Warnings
	// webhook is the webhook running in this process.
	webhook *devcluster.Process
	// dir holds the files the demo writes (kubeconfig, policy file) and
	// the slimgate command cli builds.
	dir string
	cli *cliBuild
}

// host is the registry's host:port.
func (c *cluster) host() string { return strings.TrimPrefix(c.registry.URL, "http://") }

// stop stops the webhook, the API server and etcd, the registry and the
// build of the slimgate command, in that order, and removes the demo's
// files; it is safe on a partly started cluster.
func (c *cluster) stop() {
	if c.webhook != nil {
		_ = c.webhook.Stop(15 * time.Second)
	}
	if c.env != nil {
		_ = c.env.Stop()
	}
	if c.registry != nil {
		c.registry.Close()
	}
	if c.cli != nil {
		c.cli.stop()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// startCLIBuild makes the demo's folder and starts building the slimgate
// command of the repository at root into it.
func (c *cluster) startCLIBuild(root string) error {
	dir, err := os.MkdirTemp("", "slimgate-demo-")
	if err != nil {
		return err
	}
	c.dir, c.cli = dir, startCLIBuild(root, dir)
	return nil
}

// startRegistry serves an in-memory registry on loopback.
func (c *cluster) startRegistry() {
	c.registry = httptest.NewServer(devcluster.NewRegistry())
}

// startControlPlane starts kube-apiserver and etcd with the CRD and the
// webhook configuration of config/, then the webhook in this process.
func (c *cluster) startControlPlane(ctx context.Context, o opts) error {
	// The script prints its progress on stderr when it has to build.
	env, cfg, err := devcluster.Env{Root: o.root, Assets: o.assets, Webhooks: true, ScriptStderr: os.Stderr,
		ExtraCRDDirs: []string{filepath.Join(o.root, "config", "crd", "openreports")}}.Start(ctx)
	if err != nil {
		return err
	}
	c.env = env
	c.warnings = &devcluster.Warnings{}
	if c.client, err = devcluster.NewClient(cfg, c.warnings); err != nil {
		return err
	}
	// The release namespace: the webhook's replicas elect the one that
	// scans with a Lease there.
	release := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app.DefaultNamespace}}
	if err := c.client.Create(ctx, release); err != nil {
		return fmt.Errorf("creating namespace %s: %w", release.Name, err)
	}
	return c.startWebhook(ctx, cfg)
}

// startWebhook runs cmd/webhook/app in this process, serving on the port
// envtest registered in the ValidatingWebhookConfiguration, and waits
// until it reports ready.
func (c *cluster) startWebhook(ctx context.Context, cfg *rest.Config) error {
	probe, err := devcluster.FreeAddr()
	if err != nil {
		return err
	}
	wio := c.env.WebhookInstallOptions
	c.webhook = devcluster.Go(context.WithoutCancel(ctx), func(ctx context.Context) error {
		return app.Run(ctx, app.Options{
			Config: cfg, Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
			MetricsAddr: "0", ProbeAddr: probe, Concurrency: 4,
			DefaultTimeout: 10 * time.Second, TimeoutMargin: time.Second, ShutdownTimeout: 5 * time.Second,
			Registerer: prometheus.NewRegistry(),
			// The demo registry is on loopback: exempt exactly that
			// address from the private-network guard.
			EgressExempt: []string{c.host()},
			// The background scan, quick to follow the demo's changes.
			ScanInterval: time.Hour, ScanDebounce: 300 * time.Millisecond,
		})
	})
	if err := devcluster.WaitReady(ctx, "http://"+probe+"/readyz", 60*time.Second, c.webhook); err != nil {
		return fmt.Errorf("the webhook: %w", err)
	}
	return nil
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
		err := devcluster.Poll(ctx, 20*time.Second, func() error {
			var got v1alpha1.SlimImagePolicy
			if err := c.client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, controller.ConditionReady)
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
