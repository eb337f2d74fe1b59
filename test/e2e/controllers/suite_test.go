package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// suite is what TestMain sets up once for every test.
type suite struct {
	client client.Client
	kcm    *devcluster.ControllerManagerProcess
	// reg holds the images of devcluster.Registries.PushApps.
	reg *devcluster.Registries
	// webhook runs with webhookOptions (the background scan on).
	webhook        *devcluster.Process
	webhookOptions app.Options
}

var e2e suite

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	logf.SetLogger(devcluster.NewLogger(io.Discard, "E2E_WEBHOOK_LOGS"))
	ctx := context.Background()
	root := filepath.Join("..", "..", "..")
	env, _, err := devcluster.Env{Root: root, Webhooks: true,
		ExtraCRDDirs: []string{filepath.Join(root, "config", "crd", "openreports")}}.Start(ctx)
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
	kcm, err := devcluster.ControllerManager{ServiceAccountCredentials: true, QPS: 200, Burst: 400, Output: out}.Start(ctx, env, time.Minute)
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
	// The background scan, quick to follow changes; it elects its
	// replica with a Lease in the release namespace.
	o.ScanInterval, o.ScanDebounce = time.Hour, 300*time.Millisecond
	e2e.webhookOptions = o
	if e2e.client, err = devcluster.NewClient(env.Config, nil); err != nil {
		return 0, err
	}
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
