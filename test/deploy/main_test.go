package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/internal/devcluster"
)

// Paths from this package to what it tests.
var (
	chartDir     = filepath.Join("..", "..", "charts", "slimgate")
	configDir    = filepath.Join("..", "..", "config")
	generatedCRD = filepath.Join(configDir, "crd", "bases", "slimgate.dev_slimimagepolicies.yaml")
	chartCRD     = filepath.Join(chartDir, "crds", "slimgate.dev_slimimagepolicies.yaml")
	standInCRDs  = filepath.Join("testdata", "crds")
)

// releaseNamespace is where the tests install the chart, the namespace
// config/default uses too.
const releaseNamespace = "slimgate-system"

// serviceAccountUser is the user name the webhook has in the cluster.
const serviceAccountUser = "system:serviceaccount:" + releaseNamespace + ":slimgate"

// suite is what TestMain sets up once for every test.
type suite struct {
	// cfg and admin reach the API server as its administrator; admin's
	// warnings are collected in warnings.
	cfg      *rest.Config
	admin    client.Client
	scheme   *runtime.Scheme
	warnings *devcluster.Warnings
	// kubeVersion is the API server's version, given to helm.
	kubeVersion string
	// helm and kustomize are the tools' paths; helmErr and kustomizeErr
	// say why one was not found.
	helm, kustomize       string
	helmErr, kustomizeErr error
	// webhooks is where the API server sends admission reviews: the
	// chart's ValidatingWebhookConfiguration pointed at a local port. nil
	// without helm.
	webhooks *envtest.WebhookInstallOptions
	// logs holds everything the webhook and client-go logged.
	logs *syncBuffer
}

var s suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	s.logs = &syncBuffer{}
	logger := devcluster.NewLogger(s.logs, "DEPLOY_TEST_LOGS")
	logf.SetLogger(logger)
	// client-go's reflectors report list and watch failures (forbidden
	// ones among them) through klog.
	klog.SetLogger(logger)

	s.helm, s.helmErr = findTool("SLIMGATE_HELM", "helm")
	s.kustomize, s.kustomizeErr = findTool("SLIMGATE_KUSTOMIZE", "kustomize")
	if os.Getenv("CI") == "true" {
		if err := errors.Join(s.helmErr, s.kustomizeErr); err != nil {
			fmt.Fprintf(os.Stderr, "CI=true and a tool is missing (run make test): %v\n", err)
			return 1
		}
	}

	env, cfg, err := devcluster.Env{Root: filepath.Join("..", ".."), ExtraCRDDirs: []string{standInCRDs}}.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if err := setUp(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if s.webhooks != nil {
		defer func() { _ = s.webhooks.Cleanup() }()
	}
	return m.Run()
}

// setUp makes the clients, the release namespace and, with helm, installs
// the chart's webhook configuration.
func setUp(cfg *rest.Config) error {
	s.cfg = cfg
	s.warnings = &devcluster.Warnings{}
	var err error
	if s.admin, err = devcluster.NewClient(cfg, s.warnings); err != nil {
		return err
	}
	s.scheme = s.admin.Scheme()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return fmt.Errorf("asking the API server its version: %w", err)
	}
	s.kubeVersion = kubeVersion(v.GitVersion)

	// The release namespace, with the Pod Security level the chart is
	// written for.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	if err := s.admin.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the release namespace: %w", err)
	}

	if s.helm == "" {
		return nil
	}
	objs, err := renderChart()
	if err != nil {
		return err
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := find(objs, "ValidatingWebhookConfiguration", "slimgate", &vwc); err != nil {
		return err
	}
	// envtest points the service clientConfig at a local port and signs a
	// serving certificate for it; everything else is the chart's.
	s.webhooks = &envtest.WebhookInstallOptions{ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{&vwc}}
	if err := s.webhooks.Install(cfg); err != nil {
		return fmt.Errorf("installing the chart's webhook configuration: %w", err)
	}
	return nil
}

// kubeVersion is the Kubernetes version helm renders for: the API
// server's, or, when it reports none (a build without version stamps says
// v0.0.0-master), the one matching the k8s.io/api module the tests use.
func kubeVersion(server string) string {
	if strings.HasPrefix(server, "v1.") {
		return server
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/api" && strings.HasPrefix(d.Version, "v0.") {
				return "v1." + strings.TrimPrefix(d.Version, "v0.")
			}
		}
	}
	return "v1.37.0"
}

// findTool looks for a tool in $env, then in the repository's bin/, then
// on $PATH.
func findTool(env, name string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, p, err)
		}
		return filepath.Abs(p)
	}
	if p := filepath.Join("..", "..", "bin", name); isExecutable(p) {
		return filepath.Abs(p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in $%s, bin/ or $PATH (make tools builds it)", name, env)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// needHelm skips the test without helm (TestMain already failed under CI).
func needHelm(t *testing.T) {
	t.Helper()
	if s.helm == "" {
		t.Skipf("skipped: %v", s.helmErr)
	}
}

// needKustomize skips the test without kustomize.
func needKustomize(t *testing.T) {
	t.Helper()
	if s.kustomize == "" {
		t.Skipf("skipped: %v", s.kustomizeErr)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
