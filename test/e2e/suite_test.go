package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
)

// webhookTimeout is timeoutSeconds in config/webhook/manifests.yaml.
const webhookTimeout = 10 * time.Second

// Credentials of the password-protected registry.
const (
	registryUser     = "puller"
	registryPassword = "s3cret-pull"
)

// suite is what TestMain sets up once for every test.
type suite struct {
	client   client.Client
	warnings *warnings
	// registry and private are the hosts (127.0.0.1:port) of the open and
	// the password-protected registries.
	registry, private string
	// unreachable is a loopback address where nothing listens.
	unreachable string
}

var e2e suite

// Images pushed to the registries.
func (s suite) golangApp() string  { return s.registry + "/golang-app:1" }
func (s suite) slimApp() string    { return s.registry + "/slim-app:1" }
func (s suite) bigApp() string     { return s.registry + "/big-app:1" }
func (s suite) privateApp() string { return s.private + "/team/golang-app:1" }

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	logOut := io.Discard
	if os.Getenv("E2E_WEBHOOK_LOGS") != "" {
		logOut = os.Stderr
	}
	logf.SetLogger(zap.New(zap.WriteTo(logOut), zap.UseDevMode(true)))
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		out, err := exec.Command("../../hack/envtest-assets.sh").Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "envtest assets: %v\n", err)
			return 1
		}
		assets = strings.TrimSpace(string(out))
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join("..", "..", "config", "webhook")}},
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the API server: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	code, err := withWebhook(m, cfg, &env.WebhookInstallOptions)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}

func withWebhook(m *testing.M, cfg *rest.Config, wio *envtest.WebhookInstallOptions) (int, error) {
	probe, err := freeAddr()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{
			Config: cfg, Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
			MetricsAddr: "0", ProbeAddr: probe, PullSecretAuth: true, Concurrency: 4,
			DefaultTimeout: webhookTimeout, TimeoutMargin: time.Second, ShutdownTimeout: 5 * time.Second,
		})
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "webhook did not stop in time")
		}
	}()
	if err := waitReady(ctx, "http://"+probe+"/readyz", done); err != nil {
		return 0, err
	}

	open := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(discardLogger())))
	defer open.Close()
	private := httptest.NewServer(basicAuth(ggcrregistry.New(ggcrregistry.Logger(discardLogger()))))
	defer private.Close()
	unreachable, err := freeAddr()
	if err != nil {
		return 0, err
	}
	e2e.registry = strings.TrimPrefix(open.URL, "http://")
	e2e.private = strings.TrimPrefix(private.URL, "http://")
	e2e.unreachable = unreachable
	if err := pushImages(); err != nil {
		return 0, err
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return 0, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return 0, err
	}
	e2e.warnings = &warnings{}
	userCfg := rest.CopyConfig(cfg)
	userCfg.WarningHandler = e2e.warnings
	if e2e.client, err = client.New(userCfg, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// waitReady polls the readiness endpoint until the webhook's caches have
// synced and its server listens.
func waitReady(ctx context.Context, url string, done <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("webhook stopped before it was ready: %v", err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook not ready at %s", url)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// basicAuth puts a registry behind HTTP basic authentication.
func basicAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != registryUser || p != registryPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// dockerConfigJSON is the content of a kubernetes.io/dockerconfigjson
// Secret for the private registry.
func dockerConfigJSON(host string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(registryUser + ":" + registryPassword))
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"username": registryUser, "password": registryPassword, "auth": auth},
	}})
	return b
}

// Real history lines, from golang:1.24.4-bookworm with an app built on top.
var golangHistory = []v1.History{
	{CreatedBy: "# debian.sh --arch 'amd64' out/ 'bookworm' '@1749513600'"},
	{CreatedBy: "RUN /bin/sh -c set -eux; \tapt-get update; \tapt-get install -y --no-install-recommends \t\tg++ \t\tgcc \t\tlibc6-dev \t\tmake \t\tpkg-config \t; \trm -rf /var/lib/apt/lists/*"},
	{CreatedBy: "ENV GOLANG_VERSION=1.24.4", EmptyLayer: true},
	{CreatedBy: "ENV GOTOOLCHAIN=local", EmptyLayer: true},
	{CreatedBy: "ENV GOPATH=/go", EmptyLayer: true},
	{CreatedBy: "ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", EmptyLayer: true},
	{CreatedBy: "COPY /target/ / # buildkit", Comment: "buildkit.dockerfile.v0"},
	{CreatedBy: "WORKDIR /src", Comment: "buildkit.dockerfile.v0"},
	{CreatedBy: "COPY . . # buildkit", Comment: "buildkit.dockerfile.v0"},
	{CreatedBy: "RUN /bin/sh -c go build -o /app . # buildkit", Comment: "buildkit.dockerfile.v0"},
	{CreatedBy: `CMD ["/app"]`, Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
}

var golangEnv = []string{
	"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"GOLANG_VERSION=1.24.4", "GOTOOLCHAIN=local", "GOPATH=/go",
}

// A multi-stage build: a distroless static base and the binary copied in.
var slimHistory = []v1.History{
	{CreatedBy: "bazel build ...", Comment: "distroless static"},
	{CreatedBy: "COPY /app /app # buildkit", Comment: "buildkit.dockerfile.v0"},
	{CreatedBy: "USER 65532:65532", Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
	{CreatedBy: `ENTRYPOINT ["/app"]`, Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
}

var slimEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}

// buildImage makes an image with exactly this history: one random layer
// per history entry that adds one, the last of them of lastLayer bytes.
func buildImage(history []v1.History, env []string, lastLayer int64) (v1.Image, error) {
	img := empty.Image
	n := 0
	for _, h := range history {
		if !h.EmptyLayer {
			n++
		}
	}
	for i := range n {
		size := int64(512)
		if i == n-1 && lastLayer > 0 {
			size = lastLayer
		}
		l, err := random.Layer(size, types.DockerLayer)
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.History = history
	cf.Config.Env = env
	return mutate.ConfigFile(img, cf)
}

func pushImages() error {
	push := func(ref string, history []v1.History, env []string, last int64, opts ...remote.Option) error {
		img, err := buildImage(history, env, last)
		if err != nil {
			return err
		}
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(r, img, opts...); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		return nil
	}
	auth := remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword})
	for _, p := range []struct {
		ref     string
		history []v1.History
		env     []string
		last    int64
		opts    []remote.Option
	}{
		{e2e.golangApp(), golangHistory, golangEnv, 0, nil},
		{e2e.slimApp(), slimHistory, slimEnv, 0, nil},
		{e2e.bigApp(), slimHistory, slimEnv, 2 << 20, nil},
		{e2e.privateApp(), golangHistory, golangEnv, 0, []remote.Option{auth}},
	} {
		if err := push(p.ref, p.history, p.env, p.last, p.opts...); err != nil {
			return err
		}
	}
	return nil
}

// warnings collects the admission warnings the client receives.
type warnings struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// take returns the warnings received since the last call.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
