package webhooktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
)

// Suite is what an end-to-end package's TestMain starts once for all its
// tests: a control plane with config/'s webhook configuration, the
// webhook serving it, the sample apps of devcluster.Registries, and a
// client.
type Suite struct {
	// Env is the running control plane.
	Env *envtest.Environment
	// Client reaches the API server as its administrator; the admission
	// warnings it receives are collected in Warnings.
	Client   client.Client
	Warnings *devcluster.Warnings
	// Registries hold the images of devcluster.Registries.PushApps.
	Registries *devcluster.Registries
	// Webhook runs the webhook with WebhookOptions. A test may stop it
	// and start another in its place: the one here when the tests end is
	// stopped.
	Webhook        *devcluster.Process
	WebhookOptions app.Options
}

// Setup says how Main starts a Suite.
type Setup struct {
	// Env is the control plane; Main installs config/webhook in it.
	Env devcluster.Env
	// LogsEnv names the environment variable that, when set, sends the
	// webhook's logs to stderr.
	LogsEnv string
	// Options, when set, adjusts the webhook's options before it starts.
	Options func(*app.Options)
}

// Main starts the Suite setup describes, passes it to tests (which runs
// the package's tests and returns their exit code), stops everything and
// returns the code. When the suite cannot start it says why on stderr and
// returns 1.
func Main(setup Setup, tests func(*Suite) int) int {
	logf.SetLogger(devcluster.NewLogger(io.Discard, setup.LogsEnv))
	setup.Env.Webhooks = true
	env, _, err := setup.Env.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	code, err := run(&Suite{Env: env}, setup, tests)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}

// run starts the webhook, the registries and the client on s.Env, and
// runs tests.
func run(s *Suite, setup Setup, tests func(*Suite) int) (int, error) {
	wio := &s.Env.WebhookInstallOptions
	o, err := Options(s.Env.Config, wio.LocalServingHost, wio.LocalServingPort, wio.LocalServingCertDir)
	if err != nil {
		return 0, err
	}
	if setup.Options != nil {
		setup.Options(&o)
	}
	s.WebhookOptions = o
	if s.Webhook, err = Run(context.Background(), o); err != nil {
		return 0, err
	}
	defer func() {
		if err := s.Webhook.Stop(StopWithin); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "webhook did not stop in time")
		}
	}()

	s.Registries = devcluster.StartRegistries("puller", "s3cret-pull")
	defer s.Registries.Close()
	if err := s.Registries.PushApps(); err != nil {
		return 0, err
	}

	s.Warnings = &devcluster.Warnings{}
	if s.Client, err = devcluster.NewClient(s.Env.Config, s.Warnings); err != nil {
		return 0, err
	}
	return tests(s), nil
}

// Namespace creates a namespace named e2e-<random> with these labels;
// it is deleted when the test ends.
func (s *Suite) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6), Labels: labels}}
	if err := s.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// Eventually polls f (devcluster.Poll) until it succeeds, and fails the
// test with f's last error when within passes first. It may run in a
// cleanup: the test's context has ended by then.
func Eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	if err := devcluster.Poll(context.Background(), within, f); err != nil {
		t.Fatal(err)
	}
}
