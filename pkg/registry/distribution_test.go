package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/pullsecret"
)

// distribution is a real registry (CNCF distribution 2.8, Debian's
// docker-registry package) on a loopback port, with TLS and htpasswd.
type distribution struct {
	host string
	cas  *x509.CertPool
}

// startDistribution starts docker-registry for the test. Without the
// binary the test is skipped, except under CI=true where it fails:
// hack/install-registry.sh installs it.
func startDistribution(t *testing.T, user, pass string) *distribution {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		msg := "docker-registry is not installed (run hack/install-registry.sh): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	caPool, certPEM, keyPEM := testCertificates(t)
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"cert.pem": certPEM, "key.pem": keyPEM,
		"htpasswd": []byte(user + ":" + string(hash) + "\n"),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr, err := devcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %[1]s/data
http:
  addr: %[2]s
  secret: test-only-secret
  tls:
    certificate: %[1]s/cert.pem
    key: %[1]s/key.pem
auth:
  htpasswd:
    realm: slimgate-test
    path: %[1]s/htpasswd
`, dir, addr)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // killed: its exit status says only that
	})
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	defer client.CloseIdleConnections()
	err = devcluster.Poll(context.Background(), 15*time.Second, func() error {
		resp, err := client.Get("https://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("/v2/ answered %s, want 401 Unauthorized", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("docker-registry did not become ready on %s: %v\n%s", addr, err, out.String())
	}
	return &distribution{host: addr, cas: caPool}
}

// testCertificates makes a serving certificate for 127.0.0.1 and its CA
// (client-go's generator) and returns a pool trusting them, the
// certificates and the key, PEM-encoded.
func testCertificates(t *testing.T) (*x509.CertPool, []byte, []byte) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate in the generated PEM")
	}
	return pool, certPEM, keyPEM
}

// dockerConfigSecret is a kubernetes.io/dockerconfigjson Secret for host.
func dockerConfigSecret(namespace, secretName, host, user, pass string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: namespace, ResourceVersion: "7"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: devcluster.DockerConfigJSON(host, user, pass)},
	}
}

func TestRealRegistryWithPullSecrets(t *testing.T) {
	const user, pass = "ci-bot", "correct horse battery staple"
	dist := startDistribution(t, user, pass)

	// Push a private image with basic auth.
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN apt-get install -y build-essential", "COPY app /app")
	ref, err := name.ParseReference(dist.host + "/team-a/private:v1")
	if err != nil {
		t.Fatal(err)
	}
	pushTransport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: dist.cas}}
	defer pushTransport.CloseIdleConnections()
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass}), remote.WithTransport(pushTransport)); err != nil {
		t.Fatalf("pushing: %v", err)
	}

	// A second registry, plain HTTP, that records Authorization headers.
	other := newTestRegistry(t, nil)
	publicRef := other.push(t, "public/app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))

	cs := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(
		dockerConfigSecret("team-a", "regcred", dist.host, user, pass),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "team-a"}},
	).Build()
	pull := pullsecret.Source{Cache: cs, API: cs}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kc, scope, err := pull.Keychain(ctx, "team-a", "", []string{"regcred", "missing-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(scope, "team-a/") {
		t.Errorf("scope = %q, want it to start with the namespace", scope)
	}
	anonKC, anonScope, err := pull.Keychain(ctx, "team-b", "", []string{"regcred"})
	if err != nil {
		t.Fatal(err)
	}
	if anonScope != "" {
		t.Errorf("namespace without secrets: scope = %q, want empty", anonScope)
	}

	r, _ := newTestRemote(t, Options{RootCAs: dist.cas})
	rules := EgressRules{Enabled: true, AllowPrivateNetworks: true, Insecure: []string{other.Host}}

	insp, err := r.Inspect(ctx, Request{Reference: ref.String(), Keychain: kc, CredentialScope: scope, Egress: rules})
	if err != nil {
		t.Fatalf("with the pull secret: %v", err)
	}
	want := expectedFacts(t, img, ref.Name())
	if len(insp.Images) != 1 || insp.Images[0].Digest != want.Digest || len(insp.Images[0].History) != 2 {
		t.Errorf("inspection = %+v, want the pushed image %s", insp, want.Digest)
	}

	// Without credentials: refused, although the facts are cached.
	_, err = r.Inspect(ctx, Request{Reference: ref.String(), Keychain: anonKC, CredentialScope: anonScope, Egress: rules})
	wantReason(t, err, ReasonUnauthorized)
	_, err = r.Inspect(ctx, Request{Reference: ref.Context().Digest(want.Digest).String(), CredentialScope: "team-c/", Egress: rules})
	wantReason(t, err, ReasonUnauthorized)

	// The same keychain used against another registry sends it nothing.
	if _, err := r.Inspect(ctx, Request{Reference: publicRef, Keychain: kc, CredentialScope: scope, Egress: rules}); err != nil {
		t.Fatal(err)
	}
	if other.Counts()["manifest GET"] != 1 {
		t.Errorf("second registry requests = %v, want a manifest GET", other.Counts())
	}
	if len(other.Authorizations()) != 0 {
		t.Errorf("credentials leaked to the second registry: %q", other.Authorizations())
	}

	// TLS is verified: without the CA the registry is not trusted.
	plain, _ := newTestRemote(t, Options{})
	_, err = plain.Inspect(ctx, Request{Reference: ref.String(), Keychain: kc, CredentialScope: scope, Egress: rules})
	if ie, ok := AsInspectionError(err); !ok || !strings.Contains(ie.Error(), "certificate") {
		t.Errorf("without the CA: err = %v, want a certificate error", err)
	}
}
