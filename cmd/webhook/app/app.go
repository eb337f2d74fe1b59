package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	cradmission "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/cloudauth"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/mirrors"
	"slimgate.dev/slimgate/pkg/pullsecret"
	"slimgate.dev/slimgate/pkg/registry"
)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch

// Paths the webhook serves; config/webhook/manifests.yaml must match them,
// and config/webhook/pinning PinPath.
const (
	PodsPath      = "/validate-pods"
	WorkloadsPath = "/validate-workloads"
	// PinPath is the mutating webhook that pins Pods' image tags to
	// digests, served with PinDigests only.
	PinPath = "/mutate-pods"
	// ExceptionsPath validates SlimImageExceptions against the policies'
	// spec.exceptions.maxDuration.
	ExceptionsPath = "/validate-exceptions"
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
	// ClientCAName, when set, names a PEM CA bundle inside CertDir (a
	// relative path, as controller-runtime's webhook.Options.ClientCAName):
	// the webhook then completes a TLS handshake only with callers that
	// present a certificate signed by it, the API server configured with
	// an admission kubeconfig. It is read once, when the server starts.
	// Empty: any caller that reaches the port may post a review.
	ClientCAName string
	// MetricsAddr serves /metrics; "0" turns it off.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" turns it off.
	ProbeAddr string
	// PullSecretAuth reads Pods' imagePullSecrets and service accounts to
	// authenticate to registries (needs get on secrets, get, list and
	// watch on serviceaccounts: service accounts are cached, secrets are
	// not).
	PullSecretAuth bool
	// RegistryAuthProviders names the cloud identities (cloudauth.ECR,
	// Google, ACR) the webhook reads their registries with, as the
	// kubelet's credential providers do; pull secrets that name a registry
	// come first. Empty: none.
	RegistryAuthProviders []string
	// Concurrency bounds the registry inspections of one review.
	Concurrency int
	// PinDigests serves PinPath, where a MutatingWebhookConfiguration
	// sends Pod CREATEs to have each image tag pinned to the digest the
	// validating review then judges (admission.Pinner). With
	// CertRotation the CA is injected into the MutatingWebhookConfiguration
	// named WebhookConfigName too.
	PinDigests bool
	// MaxImages and MaxRegistries bound the distinct images, and the
	// registries they come from, that one review inspects; a request over
	// either bound is a violation (admission.Options).
	MaxImages, MaxRegistries int
	// ControllerIdentities are the user names of the built-in controllers
	// whose ReplicaSets, Jobs and Pods may inherit their owner's standing
	// under a policy's existingWorkloads Keep (admission.Options); the
	// owners they name are then kept in the manager's cache. nil:
	// admission.DefaultControllerIdentities; empty: none, and no owner is
	// cached.
	ControllerIdentities []string
	// DefaultTimeout is assumed when the API server sends no timeout;
	// TimeoutMargin is kept back from it for answering.
	DefaultTimeout time.Duration
	TimeoutMargin  time.Duration
	// ShutdownTimeout lets in-flight reviews finish on shutdown.
	ShutdownTimeout time.Duration

	// ScanInterval is the time between two background scans of the
	// running workloads when nothing triggers one (controller.FleetScanner);
	// 0 turns the scan off. ScanDebounce is the quiet after a change
	// before the scan it triggers; ScanRegistryRate the requests per second
	// the scan may send one registry.
	ScanInterval     time.Duration
	ScanDebounce     time.Duration
	ScanRegistryRate float64

	// CertRotation makes the webhook issue and rotate its own CA and
	// serving certificate (open-policy-agent/cert-controller) instead of
	// reading ones that cert-manager put in CertDir: they are kept in the
	// Secret CertSecretName in Namespace, written to CertDir (which must
	// then be writable, an emptyDir) and the CA is injected into the
	// ValidatingWebhookConfiguration WebhookConfigName (and, with
	// PinDigests, the MutatingWebhookConfiguration of that name). The certificate
	// names the Service ServiceName in Namespace.
	CertRotation      bool
	CertSecretName    string
	WebhookConfigName string
	ServiceName       string
	// Namespace is the release namespace, where the webhook runs.
	Namespace string

	// Registerer receives slimgate's Prometheus collectors; nil:
	// controller-runtime's metrics.Registry, which /metrics serves. Run
	// unregisters them when it returns, so a later Run can register anew.
	Registerer prometheus.Registerer

	// RegistryMirrors is a YAML file of registry mirrors (package
	// mirrors): where the nodes' container runtime pulls each registry's
	// images from, read once at start. RegistryConfigPath is a containerd
	// hosts folder (DIR/<host>/hosts.toml) read instead. Empty: none.
	RegistryMirrors, RegistryConfigPath string

	// EgressExempt lists exact "ip:port" registry addresses the egress
	// guard lets through even where a policy refuses private networks
	// (registry.Options.EgressExempt); hack/demo uses it for its loopback
	// registry. No flag sets it.
	EgressExempt []string
	// RegistryHostAliases maps registry "host:port" names to the loopback
	// addresses dialled instead (registry.Options.HostAliases): the e2e
	// tests stand loopback registries in for cloud registry hosts. No flag
	// sets it.
	RegistryHostAliases map[string]string
}

// Defaults of the options that name Kubernetes objects.
const (
	DefaultNamespace         = "slimgate-system"
	DefaultCertSecretName    = "slimgate-webhook-tls"
	DefaultWebhookConfigName = "slimgate"
	DefaultServiceName       = "slimgate-webhook"
)

// AddFlags binds the options to command-line flags, with their defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Host, "webhook-host", "", "address the webhook listens on (empty: all)")
	fs.IntVar(&o.Port, "webhook-port", 9443, "port the webhook listens on")
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder holding tls.crt and tls.key (reloaded on change)")
	fs.StringVar(&o.ClientCAName, "client-ca-name", "", "CA bundle inside --cert-dir (relative path) that must sign the caller's client certificate; empty: callers are not authenticated")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables them")
	fs.BoolVar(&o.PullSecretAuth, "pull-secret-auth", true, "authenticate to registries with the Pod's imagePullSecrets and service account")
	fs.Func("registry-auth-providers", "cloud identities the webhook reads their registries with, comma separated: "+
		strings.Join(cloudauth.Providers(), ", ")+" (default none; a Pod's pull secrets that name a registry come first)", func(v string) error {
		o.RegistryAuthProviders = nil
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if !slices.Contains(cloudauth.Providers(), p) {
				return fmt.Errorf("unknown provider %q (known: %s)", p, strings.Join(cloudauth.Providers(), ", "))
			}
			o.RegistryAuthProviders = append(o.RegistryAuthProviders, p)
		}
		return nil
	})
	fs.IntVar(&o.Concurrency, "inspect-concurrency", 16, "registry inspections run at once per review")
	fs.StringVar(&o.RegistryMirrors, "registry-mirrors", "", "YAML `file` of the nodes' registry mirrors ({docker.io: {endpoints: [https://mirror:5000], fallback: true}}): images are read where the kubelet pulls them")
	fs.StringVar(&o.RegistryConfigPath, "registry-config-path", "", "containerd hosts `folder` (DIR/<host>/hosts.toml, as the nodes' config_path) to read the registry mirrors from instead")
	fs.BoolVar(&o.PinDigests, "pin-digests", false, "serve "+PinPath+": pin the image tags of created Pods to the digests judged (needs the MutatingWebhookConfiguration)")
	fs.IntVar(&o.MaxImages, "max-images-per-review", admission.DefaultMaxImages, "distinct images one review inspects; a request naming more is denied under Enforce")
	fs.IntVar(&o.MaxRegistries, "max-registries-per-review", admission.DefaultMaxRegistries, "distinct registries one review contacts; a request naming more is denied under Enforce")
	o.ControllerIdentities = admission.DefaultControllerIdentities()
	fs.Var((*commaList)(&o.ControllerIdentities), "controller-identities", "comma-separated user names of the built-in controllers whose children inherit their owner's standing (policies' existingWorkloads Keep); empty: none")
	fs.DurationVar(&o.DefaultTimeout, "default-timeout", 10*time.Second, "review budget when the API server sends no timeout")
	fs.DurationVar(&o.TimeoutMargin, "timeout-margin", time.Second, "time kept back from the API server's timeout to answer")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "time given to in-flight reviews on shutdown")
	fs.DurationVar(&o.ScanInterval, "scan-interval", controller.DefaultScanInterval, "time between background scans of the running workloads (Reports, policy status, metrics) when nothing changes; 0 turns the scan off")
	fs.DurationVar(&o.ScanDebounce, "scan-debounce", controller.DefaultScanDebounce, "quiet after a change to a policy, namespace or workload before the scan it triggers")
	fs.Float64Var(&o.ScanRegistryRate, "scan-registry-rate", controller.DefaultScanRegistryRate, "requests per second the background scan may send one registry (reviews are never slowed)")
	fs.BoolVar(&o.CertRotation, "cert-rotation", false, "issue and rotate the webhook's own CA and serving certificate (no cert-manager): kept in --cert-secret-name, written to --cert-dir, CA injected into --webhook-config-name")
	fs.StringVar(&o.CertSecretName, "cert-secret-name", DefaultCertSecretName, "Secret in --namespace holding the generated CA and serving certificate (with --cert-rotation)")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", DefaultWebhookConfigName, "ValidatingWebhookConfiguration (and with --pin-digests the MutatingWebhookConfiguration) that receives the generated CA bundle (with --cert-rotation)")
	fs.StringVar(&o.ServiceName, "service-name", DefaultServiceName, "Service in front of the webhook; the serving certificate names <service>.<namespace>.svc (with --cert-rotation)")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = DefaultNamespace
	}
	fs.StringVar(&o.Namespace, "namespace", ns, "namespace the webhook runs in and keeps its certificate Secret in (default taken from $POD_NAMESPACE when set)")
}

// withDefaults fills the object names left empty, as by a caller that
// builds Options without AddFlags.
func (o Options) withDefaults() Options {
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&o.Namespace, DefaultNamespace},
		{&o.CertSecretName, DefaultCertSecretName},
		{&o.WebhookConfigName, DefaultWebhookConfigName},
		{&o.ServiceName, DefaultServiceName},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	return o
}

// Run serves until ctx ends, then lets in-flight reviews finish.
func Run(ctx context.Context, o Options) (err error) {
	o = o.withDefaults()
	// The mirrors are read first: a configuration that cannot be honoured
	// stops the webhook before it serves anything.
	mirrorTable, err := mirrors.LoadConfig(o.RegistryMirrors, o.RegistryConfigPath)
	if err != nil {
		return fmt.Errorf("registry mirrors: %w", err)
	}
	cfg := o.Config
	if cfg == nil {
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
	if err := reportsv1alpha1.Install(scheme); err != nil {
		return err
	}
	reg := &registrations{Registerer: o.Registerer}
	if reg.Registerer == nil {
		reg.Registerer = metrics.Registry
	}
	defer reg.unregisterAll()

	hooks := webhook.NewServer(webhook.Options{
		Host:         o.Host,
		Port:         o.Port,
		CertDir:      o.CertDir,
		ClientCAName: o.ClientCAName,
		// HTTP/2 stays off: it brought a class of denial-of-service CVEs and
		// the API server speaks HTTP/1.1 to webhooks anyway.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	identities := o.ControllerIdentities
	if identities == nil {
		identities = admission.DefaultControllerIdentities()
	}
	var owners []client.Object
	if len(identities) > 0 {
		owners = admission.OwnerObjects()
	}
	shutdown := o.ShutdownTimeout
	// Controller names are checked for uniqueness across the process, to
	// keep their metrics apart. The names here are fixed and distinct; the
	// check would only refuse a second Run in the same process (tests).
	skipNameCheck := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		WebhookServer:           hooks,
		GracefulShutdownTimeout: &shutdown,
		Controller:              config.Controller{SkipNameValidation: &skipNameCheck},
		// The only Secret the manager's cache may hold is the webhook's
		// own certificate Secret (cert rotation); pull secrets are read
		// uncached, one by one. Never a cluster-wide Secret informer.
		// Service accounts are cached with their pull secret names only,
		// Pods as the metadata that tells whether they were reviewed, and
		// ConfigMaps only for the replicas' published reviews; the owners
		// of controllers' children as their names and template images.
		Cache: cache.Options{ByObject: withOwners(map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{o.Namespace: {}},
				Field:      fields.OneTermEqualSelector("metadata.name", o.CertSecretName),
			},
			&corev1.ServiceAccount{}: {Transform: pullsecret.StripServiceAccount},
			&corev1.Pod{}:            {Transform: trimPods},
			&corev1.ConfigMap{}: {
				Namespaces: map[string]cache.Config{o.Namespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{controller.ReviewsLabel: "true"}),
			},
		}, owners)},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	// Namespaces are read from the cache for namespaceSelector matching;
	// start their informer with the manager instead of on first use.
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Namespace{}, cache.BlockUntilSynced(false)); err != nil {
		return fmt.Errorf("watching namespaces: %w", err)
	}
	for _, obj := range owners {
		if _, err := mgr.GetCache().GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	// Every replica runs the status controller: its writes are idempotent
	// (it updates only when the condition differs, and conflicting updates
	// from two replicas retry and then find nothing to change).
	if err := (&controller.PolicyStatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the policy status controller: %w", err)
	}
	// The same holds for the exceptions' status; it also starts the
	// exceptions' informer, which reviews read.
	if err := (&controller.ExceptionReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, reg); err != nil {
		return fmt.Errorf("setting up the exception status controller: %w", err)
	}

	inspector, err := registry.NewRemote(registry.Options{Registerer: reg, EgressExempt: o.EgressExempt, Mirrors: mirrorTable,
		HostAliases: o.RegistryHostAliases})
	if err != nil {
		return fmt.Errorf("creating the registry client: %w", err)
	}
	if err := watchPolicyHosts(ctx, mgr.GetCache(), inspector.SetMetricHosts); err != nil {
		return err
	}
	// Events are written by the recorder's own writer (started below): a
	// review only queues them.
	recorder, err := events.NewRecorder(events.Options{Client: mgr.GetClient(), Registerer: reg})
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	var keychain admission.KeychainFunc
	if o.PullSecretAuth {
		// Service accounts from the cache, started now so that /readyz
		// waits for it; secrets from the API server.
		if _, err := mgr.GetCache().GetInformer(ctx, &corev1.ServiceAccount{}, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("watching service accounts: %w", err)
		}
		keychain = pullsecret.Source{Cache: mgr.GetCache(), API: mgr.GetAPIReader()}.Keychain
	}
	if len(o.RegistryAuthProviders) > 0 {
		cloud, err := cloudauth.New(ctx, o.RegistryAuthProviders, cloudauth.Options{})
		if err != nil {
			return fmt.Errorf("setting up registry auth providers: %w", err)
		}
		keychain = cloud.After(keychain)
	}
	judging := admission.Options{
		Reader:        mgr.GetClient(),
		Inspector:     inspector,
		Keychain:      keychain,
		Concurrency:   o.Concurrency,
		MaxImages:     o.MaxImages,
		MaxRegistries: o.MaxRegistries,
		// Never nil here: an empty list trusts no controller.
		ControllerIdentities: identities,
	}
	reviews := controller.NewReviewLog(0)
	withRecords := judging
	withRecords.Recorder, withRecords.Reviews = recorder, reviews
	h, err := admission.NewHandler(withRecords)
	if err != nil {
		return err
	}
	publisher, unreviewed, err := unreviewedPods(ctx, mgr, o, reg, reviews, recorder, judging)
	if err != nil {
		return err
	}
	// Reviews go before the background scan's inspections.
	priority := &admission.Priority{}
	if o.ScanInterval > 0 {
		if err := fleetScan(mgr, o, reg, judging, priority, unreviewed); err != nil {
			return fmt.Errorf("setting up the background scan: %w", err)
		}
	}
	budget := admission.Budget{Default: o.DefaultTimeout, Margin: o.TimeoutMargin}
	review := priority.Wrap(finishOnShutdown(ctx.Done(), budget.Wrap(&webhook.Admission{Handler: h})))
	hooks.Register(PodsPath, review)
	hooks.Register(WorkloadsPath, review)
	hooks.Register(ExceptionsPath, finishOnShutdown(ctx.Done(), budget.Wrap(
		cradmission.WithValidator(scheme, &admission.ExceptionValidator{Reader: mgr.GetClient()}))))
	registerPreview(mgr, o, hooks)
	if o.PinDigests {
		hooks.Register(PinPath, priority.Wrap(finishOnShutdown(ctx.Done(), budget.Wrap(&webhook.Admission{Handler: admission.NewPinner(h)}))))
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", cachesSynced(mgr.GetCache())); err != nil {
		return err
	}
	if o.CertRotation {
		// The webhook server reads its certificate when it starts, so it
		// starts once the rotator's certificate is in CertDir; /readyz
		// waits for the CA to be injected too.
		certsReady, err := setupCertRotation(ctx, mgr, o, hooks)
		if err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("certs", certsReady); err != nil {
			return err
		}
	} else {
		// GetWebhookServer adds the server built above to the manager.
		mgr.GetWebhookServer()
	}
	started := hooks.StartedChecker()
	if o.ClientCAName != "" {
		// The check connects without a client certificate, which the
		// server now refuses and logs; connect only until it has once
		// succeeded (the listener stays up until Run returns).
		started = succeedOnce(started)
	}
	if err := mgr.AddReadyzCheck("webhook", started); err != nil {
		return err
	}
	// The event writer and the review publisher outlive the manager's
	// runnables: its webhook server, stopped last, lets the reviews in
	// flight finish, and their Events and records must still be written.
	workers, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, w := range []interface{ Start(context.Context) error }{recorder, publisher} {
		wg.Go(func() { _ = w.Start(workers) })
	}
	defer wg.Wait()
	defer stopWorkers()
	return mgr.Start(ctx)
}

// unreviewedPods sets up the noticing of Pods created without a review:
// the controller that judges them (the manager elects no leader: every
// replica runs it, and the Events it writes are named so that one of them
// records each Pod) and the publisher of this replica's reviews, which
// the caller starts.
func unreviewedPods(ctx context.Context, mgr ctrl.Manager, o Options, reg prometheus.Registerer, reviews *controller.ReviewLog,
	recorder *events.Recorder, judging admission.Options) (*controller.ReviewPublisher, *controller.UnreviewedPodReconciler, error) {
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.ConfigMap{}, cache.BlockUntilSynced(false)); err != nil {
		return nil, nil, fmt.Errorf("watching review records: %w", err)
	}
	judge, err := controller.NewJudge(judging)
	if err != nil {
		return nil, nil, err
	}
	r := &controller.UnreviewedPodReconciler{Client: mgr.GetClient(), API: mgr.GetAPIReader(), Log: reviews, Judge: judge,
		Events: recorder, Namespace: o.Namespace, WebhookConfigName: o.WebhookConfigName}
	if err := r.SetupWithManager(mgr, reg); err != nil {
		return nil, nil, fmt.Errorf("setting up the unreviewed Pod controller: %w", err)
	}
	return &controller.ReviewPublisher{Log: reviews, Client: mgr.GetClient(), Reader: mgr.GetClient(),
		Namespace: o.Namespace, Name: controller.ReviewsPrefix + processName()}, r, nil
}

// trimPods is the cache transform of Pods: the metadata the unreviewed
// Pod controller watches (controller.StripPodMetadata), and the Pods the
// background scan reads (fleet.TrimPod).
func trimPods(obj any) (any, error) {
	obj, err := controller.StripPodMetadata(obj)
	if err != nil {
		return nil, err
	}
	return fleet.TrimPod(obj)
}

// processName names this webhook process among the replicas, past and
// present: its host name (the Pod's name) and a random suffix.
func processName() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, host)
	host = strings.Trim(host[:min(len(host), 200)], "-")
	if host == "" {
		host = "webhook"
	}
	return host + "-" + rand.String(5)
}

// withOwners adds to the cache's per-object options the owners of
// controllers' children, each stripped to its names and template images.
func withOwners(byObject map[client.Object]cache.ByObject, owners []client.Object) map[client.Object]cache.ByObject {
	for _, obj := range owners {
		byObject[obj] = cache.ByObject{Transform: admission.StripOwner}
	}
	return byObject
}

// commaList is a flag.Value of comma-separated names; an empty value is
// an empty, non-nil list.
type commaList []string

// String implements flag.Value.
func (l *commaList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

// Set implements flag.Value.
func (l *commaList) Set(s string) error {
	out := []string{}
	for name := range strings.SplitSeq(s, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	*l = out
	return nil
}

// succeedOnce runs check until it first succeeds and reports success
// without running it from then on.
func succeedOnce(check healthz.Checker) healthz.Checker {
	var passed atomic.Bool
	return func(req *http.Request) error {
		if passed.Load() {
			return nil
		}
		if err := check(req); err != nil {
			return err
		}
		passed.Store(true)
		return nil
	}
}

// finishOnShutdown lets reviews in flight when shutdown begins run to
// their end. controller-runtime's webhook server derives every request's
// context from its own, which it cancels as it starts shutting down: the
// registry calls of a review in flight would fail and the review be
// answered as an inspection error. Here a request's context ends when the
// client goes away, but not when it ends after stopping (Run's context)
// has closed; the budget's deadline still bounds the review.
func finishOnShutdown(stopping <-chan struct{}, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		stop := context.AfterFunc(r.Context(), func() {
			select {
			case <-stopping:
			default:
				cancel()
			}
		})
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// cachesSynced is ready once every informer started has synced: policies,
// namespaces, service accounts, review records, Pod metadata and the
// owners of controllers' children.
func cachesSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("the informer caches have not synced yet")
		}
		return nil
	}
}

// registrations registers collectors with the Registerer it wraps and
// remembers them, so that Run can unregister them when it returns.
type registrations struct {
	prometheus.Registerer
	mu        sync.Mutex
	collected []prometheus.Collector
}

// Register implements prometheus.Registerer.
func (r *registrations) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collected = append(r.collected, c)
	return nil
}

// MustRegister implements prometheus.Registerer.
func (r *registrations) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// unregisterAll takes back every collector registered through r.
func (r *registrations) unregisterAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.collected {
		r.Unregister(c)
	}
	r.collected = nil
}
