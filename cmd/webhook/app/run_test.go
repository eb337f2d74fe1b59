package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// These tests run app.Run against a real kube-apiserver and etcd (envtest),
// started once by TestMain; with -short (make test-unit) none is started
// and they skip.

var (
	restConfig *rest.Config
	kube       client.Client
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	logf.SetLogger(devcluster.NewLogger(io.Discard, "WEBHOOK_TEST_LOGS"))
	env, cfg, err := devcluster.Env{Root: filepath.Join("..", "..", "..")}.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if kube, err = devcluster.NewClient(cfg, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	restConfig = cfg
	return m.Run()
}

// needAPIServer skips the test in -short mode, where TestMain starts no
// API server.
func needAPIServer(t *testing.T) {
	t.Helper()
	if restConfig == nil {
		t.Skip("needs kube-apiserver and etcd, which -short mode does not start")
	}
}

// createAll creates objs in order; each is deleted when the test ends.
func createAll(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, obj := range objs {
		if err := kube.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kube.Delete(context.Background(), obj) })
	}
}

// releaseNamespace creates a fresh namespace to install a release of the
// webhook in, deleted when the test ends. Fresh per run (go test
// -count=2): the rotator's controller is named after its Secret, and
// controller names are unique per process.
func releaseNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "slimgate-" + rand.String(5)}}
	createAll(t, ns)
	return ns.Name
}

// createPolicy creates a policy in mode that may read the plain-HTTP
// loopback registry at host, deleted when the test ends.
func createPolicy(t *testing.T, mode v1alpha1.Mode, host string) *v1alpha1.SlimImagePolicy {
	t.Helper()
	p := &v1alpha1.SlimImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "test-" + rand.String(5)},
		Spec: v1alpha1.SlimImagePolicySpec{
			Mode:       mode,
			Registries: v1alpha1.RegistryRules{AllowPrivateNetworks: true, Insecure: []string{host}},
		},
	}
	createAll(t, p)
	return p
}

// options are the options of a webhook on free loopback ports, with a
// certificate folder of its own.
func options(t *testing.T) app.Options {
	t.Helper()
	port, err := devcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o, err := webhooktest.Options(restConfig, "127.0.0.1", port, filepath.Join(t.TempDir(), "certs"))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// readyz returns the status and body of /readyz?verbose; status 0 when the
// probe server does not answer.
func readyz(probe string) (int, string) {
	resp, err := http.Get("http://" + probe + "/readyz?verbose")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitReady waits for /readyz, failing the test when Run returns first.
func waitReady(t *testing.T, o app.Options, run *devcluster.Process) {
	t.Helper()
	if err := webhooktest.WaitReady(context.Background(), o, run); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// decisionsCounter has the name and labels of pkg/events' decision
// counter: registering it fails while a Run has registered its own.
func decisionsCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slimgate_decisions_total",
		Help: "Admission decisions per policy, by the policy's mode and the verdict.",
	}, []string{"policy", "mode", "verdict"})
}

// TestRunTwice runs the server twice in one process with controller-runtime's
// global metrics registry, as the e2e suite and tests that restart it do.
func TestRunTwice(t *testing.T) {
	needAPIServer(t)
	for i := range 2 {
		t.Run(fmt.Sprint("run ", i+1), func(t *testing.T) {
			o := options(t)
			// The webhook serves with a certificate from the folder, as
			// with cert-manager.
			writeSelfSigned(t, o.CertDir)
			waitReady(t, o, webhooktest.Start(t, o))
			err := metrics.Registry.Register(decisionsCounter())
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				t.Errorf("registering the decision counter during Run gave %v, want AlreadyRegisteredError", err)
			}
		})
		// The subtest's cleanup has stopped Run: its collectors are gone.
		c := decisionsCounter()
		if err := metrics.Registry.Register(c); err != nil {
			t.Fatalf("after Run returned, its collectors are still registered: %v", err)
		}
		metrics.Registry.Unregister(c)
	}
}

// TestCertRotation runs the webhook without cert-manager: it must issue its
// CA and serving certificate, keep them in the Secret, inject the CA into
// both webhooks of the configuration, write the files, serve TLS with that
// certificate, and report ready only then; and reissue a damaged
// certificate.
func TestCertRotation(t *testing.T) {
	needAPIServer(t)
	ctx := context.Background()
	ns := releaseNamespace(t)
	vwc := webhookConfiguration(t, ns)
	createAll(t, vwc)
	secretKey := types.NamespacedName{Namespace: ns, Name: "slimgate-webhook-tls"}

	o := options(t)
	// The webhook acts as its ServiceAccount, with exactly the
	// permissions of config/rbac: this also proves it caches no Secrets
	// outside its namespace.
	o.Config = installRBAC(t, ns)
	o.CertRotation = true
	o.Namespace = ns
	o.Registerer = prometheus.NewRegistry()
	run := webhooktest.Start(t, o)

	service := "slimgate-webhook." + ns
	dnsNames := []string{service + ".svc", service + ".svc.cluster.local", service}
	var sawCertsPending bool
	began := time.Now()
	deadline := began.Add(90 * time.Second)
	for {
		code, body := readyz(o.ProbeAddr)
		if code == http.StatusOK {
			break
		}
		if strings.Contains(body, "[-]certs") {
			sawCertsPending = true
		}
		if isClosed(run.Done()) {
			t.Fatal("Run returned before it was ready")
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 90s: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawCertsPending {
		t.Error("/readyz never reported the certs check as failing before it was ready")
	}
	t.Logf("ready %s after Run started", time.Since(began).Round(10*time.Millisecond))

	// Everything below already holds the moment /readyz first says ready.
	var secret corev1.Secret
	if err := kube.Get(ctx, secretKey, &secret); err != nil {
		t.Fatalf("certificate secret: %v", err)
	}
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if len(secret.Data[k]) == 0 {
			t.Errorf("secret has no %s", k)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("ca.crt holds no certificate")
	}
	leaf := parseCert(t, secret.Data["tls.crt"])
	for _, name := range dnsNames {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate not valid for %s: %v", name, err)
		}
	}

	var got admissionregistrationv1.ValidatingWebhookConfiguration
	if err := kube.Get(ctx, client.ObjectKeyFromObject(vwc), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Webhooks) != 5 {
		t.Fatalf("configuration has %d webhooks, want 5 (pods, workloads, exceptions, two previews)", len(got.Webhooks))
	}
	for _, w := range got.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
			t.Errorf("webhook %s: caBundle is not the generated CA (%d bytes)", w.Name, len(w.ClientConfig.CABundle))
		}
	}

	checkFiles(t, o.CertDir, secret)
	if served := dialCert(t, o, service+".svc", got.Webhooks[0].ClientConfig.CABundle); !served.Equal(leaf) {
		t.Error("the server does not serve the certificate in the secret")
	}

	// Damage the serving certificate: cert-controller issues a new one from
	// the same CA, the files follow and the server picks them up.
	delete(secret.Data, "tls.crt")
	delete(secret.Data, "tls.key")
	if err := kube.Update(ctx, &secret); err != nil {
		t.Fatal(err)
	}
	var reissued corev1.Secret
	deadline = time.Now().Add(60 * time.Second)
	for {
		err := kube.Get(ctx, secretKey, &reissued)
		if err == nil && len(reissued.Data["tls.crt"]) > 0 {
			if served := dialCert(t, o, service+".svc", secret.Data["ca.crt"]); served.Equal(parseCert(t, reissued.Data["tls.crt"])) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not switch to a reissued certificate (secret: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if parseCert(t, reissued.Data["tls.crt"]).Equal(leaf) {
		t.Error("the reissued certificate is the old one")
	}
	if !bytes.Equal(reissued.Data["ca.crt"], secret.Data["ca.crt"]) {
		t.Error("reissuing the serving certificate replaced the CA")
	}
	checkFiles(t, o.CertDir, reissued)
}

// readConfig reads a file of the repository's config/ folder strictly
// into out.
func readConfig(t *testing.T, out any, path ...string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(append([]string{"..", "..", "..", "config"}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, out); err != nil {
		t.Fatal(err)
	}
}

// webhookConfiguration is config/webhook's configuration as installed in
// ns: the clientConfig names the Service, and there is no caBundle yet.
func webhookConfiguration(t *testing.T, ns string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	readConfig(t, &vwc, "webhook", "manifests.yaml")
	for i, w := range vwc.Webhooks {
		if w.ClientConfig.Service == nil || len(w.ClientConfig.CABundle) > 0 {
			t.Fatalf("webhook %s: want a service clientConfig without caBundle", w.Name)
		}
		vwc.Webhooks[i].ClientConfig.Service.Namespace = ns
	}
	return &vwc
}

// installRBAC installs config/rbac for a release in ns, as kustomize or the
// chart would (namespaced objects and subjects moved to ns; cluster-wide
// ones renamed per run), and returns a config acting as the webhook's
// ServiceAccount.
func installRBAC(t *testing.T, ns string) *rest.Config {
	t.Helper()
	createAll(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "slimgate"}})
	for _, file := range []string{"role.yaml", "role_binding.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "rbac", file))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj unstructured.Unstructured
			if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			switch obj.GetKind() {
			case "Role", "RoleBinding":
				obj.SetNamespace(ns)
			case "ClusterRole", "ClusterRoleBinding":
				obj.SetName(obj.GetName() + "-" + ns)
			default:
				t.Fatalf("%s: unexpected %s", file, obj.GetKind())
			}
			if strings.HasSuffix(obj.GetKind(), "Binding") {
				subjects, _, _ := unstructured.NestedSlice(obj.Object, "subjects")
				for _, s := range subjects {
					s.(map[string]any)["namespace"] = ns
				}
				if err := unstructured.SetNestedSlice(obj.Object, subjects, "subjects"); err != nil {
					t.Fatal(err)
				}
				if obj.GetKind() == "ClusterRoleBinding" {
					role, _, _ := unstructured.NestedString(obj.Object, "roleRef", "name")
					if err := unstructured.SetNestedField(obj.Object, role+"-"+ns, "roleRef", "name"); err != nil {
						t.Fatal(err)
					}
				}
			}
			createAll(t, &obj)
		}
	}
	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":slimgate"}
	return cfg
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// checkFiles checks the cert folder holds the secret's key pair, private.
func checkFiles(t *testing.T, dir string, secret corev1.Secret) {
	t.Helper()
	for _, name := range []string{"tls.crt", "tls.key"} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("cert folder: %v", err)
			continue
		}
		if !bytes.Equal(data, secret.Data[name]) {
			t.Errorf("%s differs from the secret's", name)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group and others", name, fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ca.key must not be written out (stat: %v)", err)
	}
}

// dialCert connects to the webhook as the API server would, trusting only
// caBundle and naming the Service, and returns the certificate served.
func dialCert(t *testing.T, o app.Options, serverName string, caBundle []byte) *x509.Certificate {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caBundle) {
		t.Fatal("caBundle holds no certificate")
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(o.Host, fmt.Sprint(o.Port)),
		&tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake with the injected CA: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}
