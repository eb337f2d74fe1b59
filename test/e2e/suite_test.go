package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// webhookTimeout is timeoutSeconds in config/webhook/manifests.yaml.
const webhookTimeout = 10 * time.Second

// suite is what TestMain sets up once for every test.
type suite struct {
	// Suite is the control plane and the webhook serving it; a test may
	// stop Suite.Webhook and start another in its place.
	*webhooktest.Suite
	// client, warnings and reg are the Suite's Client, Warnings and
	// Registries (the images of devcluster.Registries.PushApps, in an
	// open and a password-protected registry).
	client   client.Client
	warnings *devcluster.Warnings
	reg      *devcluster.Registries
	// unreachable is a loopback address where nothing listens.
	unreachable string
}

var e2e suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	root := filepath.Join("..", "..")
	pin, err := pinningWebhook(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return webhooktest.Main(webhooktest.Setup{
		Env: devcluster.Env{Root: root, Configure: func(env *envtest.Environment) {
			env.WebhookInstallOptions.MutatingWebhooks = append(env.WebhookInstallOptions.MutatingWebhooks, pin)
		}},
		LogsEnv: "E2E_WEBHOOK_LOGS",
		Options: func(o *app.Options) {
			o.DefaultTimeout = webhookTimeout
			o.PinDigests = true // config/webhook/pinning applies to namespaces labelled pinLabel only
		},
	}, func(s *webhooktest.Suite) int {
		e2e = suite{Suite: s, client: s.Client, warnings: s.Warnings, reg: s.Registries}
		if e2e.unreachable, err = devcluster.FreeAddr(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	})
}
