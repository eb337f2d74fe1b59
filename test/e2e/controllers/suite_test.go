package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
	"slimgate.dev/slimgate/pkg/admission"
)

// suite is what TestMain sets up once for every test.
type suite struct {
	// cfg reaches the API server as its administrator, as client does.
	cfg    *rest.Config
	client client.Client
	kcm    *devcluster.ControllerManagerProcess
	// reg holds the images of devcluster.Registries.PushApps.
	reg *devcluster.Registries
	// webhook runs with webhookOptions; a test may stop it and run it
	// again. webhookRequests counts the API requests it makes.
	webhook         *devcluster.Process
	webhookOptions  app.Options
	webhookRequests *devcluster.Requests
}

var e2e suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	logf.SetLogger(devcluster.NewLogger(io.Discard, "E2E_WEBHOOK_LOGS"))
	ctx := context.Background()
	env, _, err := devcluster.Env{Root: filepath.Join("..", "..", ".."), Webhooks: true}.Start(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	code, err := withControllers(ctx, m, env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}

func withControllers(ctx context.Context, m *testing.M, env *envtest.Environment) (int, error) {
	var out io.Writer
	if os.Getenv("E2E_KCM_LOGS") != "" {
		out = os.Stderr
	}
	// Unthrottled, as BenchmarkRollout50 measures the webhook's share.
	kcm, err := devcluster.ControllerManager{ServiceAccountCredentials: true, QPS: 1000, Burst: 2000, Output: out}.Start(ctx, env, time.Minute)
	if err != nil {
		return 0, err
	}
	e2e.kcm = kcm
	defer func() {
		if err := kcm.Stop(10 * time.Second); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "kube-controller-manager did not stop in time")
		}
	}()
	wio := &env.WebhookInstallOptions
	o, err := webhooktest.Options(env.Config, wio.LocalServingHost, wio.LocalServingPort, wio.LocalServingCertDir)
	if err != nil {
		return 0, err
	}
	// Only the controllers' service accounts are trusted, not the
	// controller manager's own user: the controllers' children are kept
	// only if their requests carry those identities.
	o.ControllerIdentities = slices.DeleteFunc(admission.DefaultControllerIdentities(), func(id string) bool {
		return id == devcluster.ControllerManagerUser
	})
	// A stop takes at most a second, so that an outage is as short as a
	// test makes it.
	o.ShutdownTimeout = time.Second
	e2e.webhookRequests = &devcluster.Requests{}
	o.Config = rest.CopyConfig(env.Config)
	o.Config.Wrap(e2e.webhookRequests.Wrap)
	e2e.webhookOptions = o
	e2e.cfg = env.Config
	if e2e.client, err = devcluster.NewClient(env.Config, nil); err != nil {
		return 0, err
	}
	// The release namespace, where the webhook publishes the Pod
	// creations it reviewed (for telling unreviewed ones apart).
	release := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app.DefaultNamespace}}
	if err := e2e.client.Create(ctx, release); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, err
	}
	if e2e.webhook, err = webhooktest.Run(ctx, o); err != nil {
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
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kube-controller-manager's last lines:\n%s\n", kcm.LogTail(60))
	}
	return code, nil
}
