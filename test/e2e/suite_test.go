package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
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
	warnings *devcluster.Warnings
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
	env, cfg, err := devcluster.Env{Root: filepath.Join("..", ".."), Webhooks: true}.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
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
	probe, err := devcluster.FreeAddr()
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	webhook := devcluster.Go(ctx, func(ctx context.Context) error {
		return app.Run(ctx, app.Options{
			Config: cfg, Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
			MetricsAddr: "0", ProbeAddr: probe, PullSecretAuth: true, Concurrency: 4,
			DefaultTimeout: webhookTimeout, TimeoutMargin: time.Second, ShutdownTimeout: 5 * time.Second,
		})
	})
	defer func() {
		if err := webhook.Stop(15 * time.Second); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "webhook did not stop in time")
		}
	}()
	if err := devcluster.WaitReady(ctx, "http://"+probe+"/readyz", 60*time.Second, webhook); err != nil {
		return 0, fmt.Errorf("webhook: %w", err)
	}

	open := httptest.NewServer(devcluster.NewRegistry())
	defer open.Close()
	private := httptest.NewServer(devcluster.BasicAuth(devcluster.NewRegistry(), registryUser, registryPassword, "e2e"))
	defer private.Close()
	unreachable, err := devcluster.FreeAddr()
	if err != nil {
		return 0, err
	}
	e2e.registry = strings.TrimPrefix(open.URL, "http://")
	e2e.private = strings.TrimPrefix(private.URL, "http://")
	e2e.unreachable = unreachable
	if err := pushImages(); err != nil {
		return 0, err
	}

	e2e.warnings = &devcluster.Warnings{}
	if e2e.client, err = devcluster.NewClient(cfg, e2e.warnings); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// dockerConfigJSON is the content of a kubernetes.io/dockerconfigjson
// Secret for the private registry.
func dockerConfigJSON(host string) []byte {
	return devcluster.DockerConfigJSON(host, registryUser, registryPassword)
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

func pushImages() error {
	push := func(ref string, history []v1.History, env []string, last int64, opts ...remote.Option) error {
		img, err := devcluster.BuildImage(history, env, 512, last)
		if err != nil {
			return err
		}
		return devcluster.Push(ref, img, opts...)
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
