package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// webhookTimeout is timeoutSeconds in config/webhook/manifests.yaml.
const webhookTimeout = 10 * time.Second

// suite is what TestMain sets up once for every test.
type suite struct {
	client   client.Client
	warnings *devcluster.Warnings
	// reg holds the images of devcluster.Registries.PushApps, in an open
	// and a password-protected registry.
	reg *devcluster.Registries
	// unreachable is a loopback address where nothing listens.
	unreachable string
	// webhook runs the webhook with webhookOptions; a test may stop it
	// and start another in its place.
	webhook        *devcluster.Process
	webhookOptions app.Options
}

var e2e suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	logf.SetLogger(devcluster.NewLogger(io.Discard, "E2E_WEBHOOK_LOGS"))
	root := filepath.Join("..", "..")
	pin, err := pinningWebhook(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, cfg, err := devcluster.Env{Root: root, Webhooks: true, Configure: func(env *envtest.Environment) {
		env.WebhookInstallOptions.MutatingWebhooks = append(env.WebhookInstallOptions.MutatingWebhooks, pin)
	}}.Start(context.Background())
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
	o, err := webhooktest.Options(cfg, wio.LocalServingHost, wio.LocalServingPort, wio.LocalServingCertDir)
	if err != nil {
		return 0, err
	}
	o.DefaultTimeout = webhookTimeout
	o.PinDigests = true // config/webhook/pinning applies to namespaces labelled pinLabel only
	e2e.webhookOptions = o
	if e2e.webhook, err = webhooktest.Run(context.Background(), o); err != nil {
		return 0, err
	}
	defer func() {
		if err := e2e.webhook.Stop(webhooktest.StopWithin); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "webhook did not stop in time")
		}
	}()

	e2e.reg = devcluster.StartRegistries("puller", "s3cret-pull")
	defer e2e.reg.Close()
	if err := e2e.reg.PushApps(); err != nil {
		return 0, err
	}
	if e2e.unreachable, err = devcluster.FreeAddr(); err != nil {
		return 0, err
	}

	e2e.warnings = &devcluster.Warnings{}
	if e2e.client, err = devcluster.NewClient(cfg, e2e.warnings); err != nil {
		return 0, err
	}
	return m.Run(), nil
}
