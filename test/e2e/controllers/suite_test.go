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

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
	"slimgate.dev/slimgate/pkg/admission"
)

// suite is what TestMain sets up once for every test.
type suite struct {
	client client.Client
	kcm    *devcluster.ControllerManagerProcess
	// reg holds the images of devcluster.Registries.PushApps.
	reg *devcluster.Registries
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
	// Only the controllers' service accounts are trusted, not the
	// controller manager's own user: the controllers' children are kept
	// only if their requests carry those identities.
	o.ControllerIdentities = slices.DeleteFunc(admission.DefaultControllerIdentities(), func(id string) bool {
		return id == devcluster.ControllerManagerUser
	})
	webhook, err := webhooktest.Run(ctx, o)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := webhook.Stop(webhooktest.StopWithin); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "webhook did not stop in time")
		}
	}()
	e2e.reg = devcluster.StartRegistries("puller", "s3cret-pull")
	defer e2e.reg.Close()
	if err := e2e.reg.PushApps(); err != nil {
		return 0, err
	}
	if e2e.client, err = devcluster.NewClient(env.Config, nil); err != nil {
		return 0, err
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kube-controller-manager's last lines:\n%s\n", kcm.LogTail(60))
	}
	return code, nil
}
