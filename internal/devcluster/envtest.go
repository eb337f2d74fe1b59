package devcluster

import (
	"context"
	"fmt"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// Env describes a control plane (kube-apiserver and etcd) started from
// the repository's config/ folder.
type Env struct {
	// Root is the repository root, relative or absolute.
	Root string
	// Assets is the folder holding kube-apiserver and etcd. Empty: the
	// KUBEBUILDER_ASSETS variable, else what hack/envtest-assets.sh prints.
	Assets string
	// Webhooks installs the ValidatingWebhookConfiguration of
	// config/webhook, pointed by envtest at a local port with a serving
	// certificate it generates.
	Webhooks bool
	// ExtraCRDDirs are folders of CRDs installed besides config/crd/bases.
	ExtraCRDDirs []string
	// Configure, when set, adjusts the environment before it starts (extra
	// kube-apiserver flags, a fixed webhook address).
	Configure func(*envtest.Environment)
	// ScriptStderr receives hack/envtest-assets.sh's progress output when it
	// has to run; nil discards it.
	ScriptStderr io.Writer
}

// AssetsDir returns the folder holding kube-apiserver and etcd: e.Assets,
// else KUBEBUILDER_ASSETS, else the folder hack/envtest-assets.sh prints
// (which builds the binaries when they are not cached).
func (e Env) AssetsDir(ctx context.Context) (string, error) {
	if e.Assets != "" {
		return e.Assets, nil
	}
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(e.Root, "hack", "envtest-assets.sh"))
	cmd.Stderr = e.ScriptStderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding kube-apiserver and etcd (hack/envtest-assets.sh): %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("hack/envtest-assets.sh printed no folder")
	}
	return dir, nil
}

// Environment returns the envtest environment e describes, not started.
func (e Env) Environment(assets string) *envtest.Environment {
	env := &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(e.Root, "config", "crd", "bases")}, e.ExtraCRDDirs...),
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if e.Webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(e.Root, "config", "webhook")}}
	}
	if e.Configure != nil {
		e.Configure(env)
	}
	return env
}

// Start finds the assets and starts kube-apiserver and etcd. The caller
// stops the returned environment; when Start fails it has stopped
// whatever it started.
func (e Env) Start(ctx context.Context) (*envtest.Environment, *rest.Config, error) {
	assets, err := e.AssetsDir(ctx)
	if err != nil {
		return nil, nil, err
	}
	env := e.Environment(assets)
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	return env, cfg, nil
}

// NewScheme returns a scheme with client-go's built-in types, slimgate's
// v1alpha1 API and the openreports.io Reports its scan writes.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("adding client-go types: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("adding slimgate.dev/v1alpha1: %w", err)
	}
	if err := reportsv1alpha1.Install(scheme); err != nil {
		return nil, fmt.Errorf("adding openreports.io/v1alpha1: %w", err)
	}
	return scheme, nil
}

// NewClient returns a client for cfg with NewScheme's types. A non-nil
// warnings receives every warning the API server returns; cfg itself is
// not modified.
func NewClient(cfg *rest.Config, warnings rest.WarningHandler) (client.Client, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	if warnings != nil {
		cfg = rest.CopyConfig(cfg)
		cfg.WarningHandler = warnings
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return c, nil
}

// NewLogger returns a development zap logger writing to w and, when the
// environment variable env is set, to standard error too: a suite's
// webhook and client-go are quiet unless asked.
func NewLogger(w io.Writer, env string) logr.Logger {
	if os.Getenv(env) != "" {
		w = io.MultiWriter(w, os.Stderr)
	}
	return zap.New(zap.WriteTo(w), zap.UseDevMode(true))
}

// WaitPolicyReady polls the SlimImagePolicy name until its condition
// condition (the webhook's "Ready") is true for its current generation,
// for up to within.
func WaitPolicyReady(ctx context.Context, c client.Reader, name, condition string, within time.Duration) error {
	return Poll(ctx, within, func() error {
		var p v1alpha1.SlimImagePolicy
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(p.Status.Conditions, condition)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != p.Generation {
			return fmt.Errorf("policy %s not %s: %+v", name, condition, p.Status)
		}
		return nil
	})
}
