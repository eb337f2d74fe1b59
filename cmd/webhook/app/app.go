package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/registry"
)

// +kubebuilder:rbac:groups="",resources=secrets;serviceaccounts,verbs=get

// Paths the webhook serves; config/webhook/manifests.yaml must match them.
const (
	PodsPath      = "/validate-pods"
	WorkloadsPath = "/validate-workloads"
)

// Options is everything the server is configured with.
type Options struct {
	// Config reaches the API server; nil: kubeconfig or in-cluster config.
	Config *rest.Config
	// Host, Port and CertDir configure the webhook's TLS listener; CertDir
	// holds tls.crt and tls.key and is watched for changes.
	Host    string
	Port    int
	CertDir string
	// MetricsAddr serves /metrics; "0" turns it off.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" turns it off.
	ProbeAddr string
	// PullSecretAuth reads Pods' imagePullSecrets and service accounts to
	// authenticate to registries (needs get on secrets and serviceaccounts).
	PullSecretAuth bool
	// Concurrency bounds the registry inspections of one review.
	Concurrency int
	// DefaultTimeout is assumed when the API server sends no timeout;
	// TimeoutMargin is kept back from it for answering.
	DefaultTimeout time.Duration
	TimeoutMargin  time.Duration
	// ShutdownTimeout lets in-flight reviews finish on shutdown.
	ShutdownTimeout time.Duration
}

// AddFlags binds the options to command-line flags, with their defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Host, "webhook-host", "", "address the webhook listens on (empty: all)")
	fs.IntVar(&o.Port, "webhook-port", 9443, "port the webhook listens on")
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder holding tls.crt and tls.key (reloaded on change)")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables them")
	fs.BoolVar(&o.PullSecretAuth, "pull-secret-auth", true, "authenticate to registries with the Pod's imagePullSecrets and service account")
	fs.IntVar(&o.Concurrency, "inspect-concurrency", 8, "registry inspections run at once per review")
	fs.DurationVar(&o.DefaultTimeout, "default-timeout", 10*time.Second, "review budget when the API server sends no timeout")
	fs.DurationVar(&o.TimeoutMargin, "timeout-margin", time.Second, "time kept back from the API server's timeout to answer")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "time given to in-flight reviews on shutdown")
}

// Run serves until ctx ends, then lets in-flight reviews finish.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if cfg == nil {
		var err error
		if cfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("finding the API server: %w", err)
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	hooks := webhook.NewServer(webhook.Options{
		Host:    o.Host,
		Port:    o.Port,
		CertDir: o.CertDir,
		// HTTP/2 stays off: it brought a class of denial-of-service CVEs and
		// the API server speaks HTTP/1.1 to webhooks anyway.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	shutdown := o.ShutdownTimeout
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		WebhookServer:           hooks,
		GracefulShutdownTimeout: &shutdown,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	// Namespaces are read from the cache for namespaceSelector matching;
	// start their informer with the manager instead of on first use.
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Namespace{}, cache.BlockUntilSynced(false)); err != nil {
		return fmt.Errorf("watching namespaces: %w", err)
	}
	if err := (&admission.StatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the policy status controller: %w", err)
	}

	inspector, err := registry.NewRemote(registry.Options{Registerer: metrics.Registry})
	if err != nil {
		return fmt.Errorf("creating the registry client: %w", err)
	}
	recorder, err := events.NewRecorder(mgr.GetEventRecorder("slimgate"), mgr.GetAPIReader(), metrics.Registry)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	var keychain admission.KeychainFunc
	if o.PullSecretAuth {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("creating a clientset: %w", err)
		}
		keychain = func(ctx context.Context, ns, sa string, secrets []string) (authn.Keychain, string, error) {
			return registry.PullSecretKeychain(ctx, cs, ns, sa, secrets)
		}
	}
	h, err := admission.NewHandler(admission.Options{
		Reader:      mgr.GetClient(),
		Inspector:   inspector,
		Keychain:    keychain,
		Recorder:    recorder,
		Concurrency: o.Concurrency,
	})
	if err != nil {
		return err
	}
	budget := admission.Budget{Default: o.DefaultTimeout, Margin: o.TimeoutMargin}
	// GetWebhookServer (not the server built above) adds it to the manager.
	hooks = mgr.GetWebhookServer()
	hooks.Register(PodsPath, budget.Wrap(&webhook.Admission{Handler: h}))
	hooks.Register(WorkloadsPath, budget.Wrap(&webhook.Admission{Handler: h}))

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", cachesSynced(mgr.GetCache())); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", hooks.StartedChecker()); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// cachesSynced is ready once the policy and namespace caches have synced.
func cachesSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("policy and namespace caches have not synced yet")
		}
		return nil
	}
}
