package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// cert-controller keeps the CA and the serving certificate in one Secret of
// the release namespace: it reads it through its own cache of that
// namespace (list, watch) and writes it back (update); slimgate creates it
// empty when missing. Create cannot be limited to a name.
// +kubebuilder:rbac:groups="",namespace=slimgate-system,resources=secrets,verbs=list;watch;create
// +kubebuilder:rbac:groups="",namespace=slimgate-system,resources=secrets,resourceNames=slimgate-webhook-tls,verbs=get;update;patch
// It watches ValidatingWebhookConfigurations (a list cannot be limited to a
// name) and writes the CA bundle into slimgate's.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=slimgate,verbs=get;update;patch
// With digest pinning, the same for the MutatingWebhookConfiguration of
// the same name.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=slimgate,verbs=get;update;patch

// caName is the common name of the generated CA.
const caName = "slimgate-ca"

// setupCertRotation adds open-policy-agent/cert-controller's rotator to mgr,
// a controller copying the serving certificate from its Secret into
// o.CertDir, and hooks, started once that certificate is there. The
// checker it returns is ready once the certificate is in place and the CA
// has been injected into the webhook configurations.
//
// Every replica runs the rotator (RequireLeaderElection false), because
// every replica serves and needs the files. Replicas racing to issue a
// certificate do not flap: cert-controller writes the Secret with an
// update carrying the resourceVersion it read, so all but one get a
// conflict, retry, and then find a valid certificate to use.
func setupCertRotation(ctx context.Context, mgr ctrl.Manager, o Options, hooks webhook.Server) (healthz.Checker, error) {
	key := types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecretName}
	// cert-controller updates the Secret but never creates it (Gatekeeper
	// ships it empty in its manifests); create it here so that installs
	// need no placeholder object. Writes go straight to the API server, so
	// this works before the manager starts.
	if err := ensureSecret(ctx, mgr.GetClient(), key); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	service := o.ServiceName + "." + o.Namespace
	webhooks := []rotator.WebhookInfo{{Name: o.WebhookConfigName, Type: rotator.Validating}}
	if o.PinDigests {
		webhooks = append(webhooks, rotator.WebhookInfo{Name: o.WebhookConfigName, Type: rotator.Mutating})
	}
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      key,
		CertDir:        o.CertDir,
		CAName:         caName,
		CAOrganization: "slimgate",
		DNSName:        service + ".svc",
		ExtraDNSNames:  []string{service + ".svc.cluster.local", service},
		IsReady:        ready,
		Webhooks:       webhooks,
		FieldOwner:     "slimgate",
		// One rotator per Secret; naming it after the Secret also keeps
		// controller names unique in a process that runs Run again
		// (tests; cert-controller's controller checks its name).
		ControllerName: "cert-rotator-" + key.Namespace + "-" + key.Name,
		// Each replica serves, so each one needs the certificate.
		RequireLeaderElection: false,
	})
	if err != nil {
		return nil, fmt.Errorf("adding the certificate rotator: %w", err)
	}

	files := &certFiles{reader: mgr.GetClient(), key: key, dir: o.CertDir, written: make(chan struct{})}
	local := false
	named := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		return obj.GetNamespace() == key.Namespace && obj.GetName() == key.Name
	})
	err = ctrl.NewControllerManagedBy(mgr).Named("webhook-cert-files").
		For(&corev1.Secret{}, builder.WithPredicates(named)).
		WithOptions(controller.Options{NeedLeaderElection: &local}).
		Complete(files)
	if err != nil {
		return nil, fmt.Errorf("setting up the certificate file controller: %w", err)
	}
	if err := mgr.Add(&startAfter{server: hooks, ready: files.written}); err != nil {
		return nil, fmt.Errorf("adding the webhook server: %w", err)
	}
	return func(*http.Request) error {
		select {
		case <-ready:
			return nil
		default:
			return errors.New("the serving certificate is not issued, written and injected yet")
		}
	}, nil
}

// ensureSecret creates the empty certificate Secret unless it exists.
func ensureSecret(ctx context.Context, c client.Client, key types.NamespacedName) error {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace,
			Name:      key.Name,
			Labels: map[string]string{
				"app.kubernetes.io/name":       "slimgate",
				"app.kubernetes.io/component":  "webhook-certificate",
				"app.kubernetes.io/managed-by": "slimgate",
			},
		},
		Type: corev1.SecretTypeOpaque,
	}
	if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the certificate secret %s: %w", key, err)
	}
	return nil
}

// startAfter starts a webhook server once ready is closed. It is a plain
// runnable, not a webhook.Server, so the manager starts it with the other
// runnables after the caches have synced rather than first.
type startAfter struct {
	server webhook.Server
	ready  <-chan struct{}
}

// Start implements manager.Runnable.
func (s *startAfter) Start(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.ready:
	}
	return s.server.Start(ctx)
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves.
func (s *startAfter) NeedLeaderElection() bool { return false }

// certFiles copies tls.crt and tls.key from the certificate Secret into
// dir whenever they change there; the webhook server's certificate watcher
// reloads them. ca.key is never written out.
type certFiles struct {
	reader  client.Reader
	key     types.NamespacedName
	dir     string
	once    sync.Once
	written chan struct{} // closed once both files hold a valid pair
}

// Reconcile implements reconcile.Reconciler.
func (f *certFiles) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.NamespacedName != f.key {
		return ctrl.Result{}, nil
	}
	var s corev1.Secret
	if err := f.reader.Get(ctx, req.NamespacedName, &s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return ctrl.Result{}, nil // not issued yet; the update that issues it comes back here
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		// cert-controller replaces a broken pair; keep serving the old one.
		logf.FromContext(ctx).Info("certificate secret holds no valid key pair yet", "error", err.Error())
		return ctrl.Result{}, nil
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return ctrl.Result{}, fmt.Errorf("creating the certificate folder: %w", err)
	}
	// The key first: a watcher that reads the new key with the old
	// certificate fails to load the pair and keeps the old one until the
	// certificate follows.
	for _, file := range []struct {
		name string
		data []byte
	}{{corev1.TLSPrivateKeyKey, key}, {corev1.TLSCertKey, crt}} {
		if err := writeIfChanged(filepath.Join(f.dir, file.name), file.data); err != nil {
			return ctrl.Result{}, err
		}
	}
	f.once.Do(func() { close(f.written) })
	return ctrl.Result{}, nil
}

// writeIfChanged replaces path with data atomically (a temporary file
// renamed over it), unless it already holds data.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
