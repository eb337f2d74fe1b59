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

	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// suite is what TestMain sets up once for every test.
type suite struct {
	// Suite is the control plane and the webhook serving it.
	*webhooktest.Suite
	// client and reg are the Suite's Client and Registries (the images
	// of devcluster.Registries.PushApps).
	client client.Client
	reg    *devcluster.Registries
	kcm    *devcluster.ControllerManagerProcess
}

var e2e suite

func TestMain(m *testing.M) {
	os.Exit(webhooktest.Main(webhooktest.Setup{
		Env:     devcluster.Env{Root: filepath.Join("..", "..", "..")},
		LogsEnv: "E2E_WEBHOOK_LOGS",
	}, func(s *webhooktest.Suite) int {
		code, err := withControllers(m, s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return code
	}))
}

// withControllers runs kube-controller-manager against the suite's
// control plane while the tests run.
func withControllers(m *testing.M, s *webhooktest.Suite) (int, error) {
	var out io.Writer
	if os.Getenv("E2E_KCM_LOGS") != "" {
		out = os.Stderr
	}
	kcm, err := devcluster.ControllerManager{ServiceAccountCredentials: true, QPS: 200, Burst: 400, Output: out}.Start(context.Background(), s.Env, time.Minute)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := kcm.Stop(10 * time.Second); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "kube-controller-manager did not stop in time")
		}
	}()
	e2e = suite{Suite: s, client: s.Client, kcm: kcm, reg: s.Registries}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kube-controller-manager's last lines:\n%s\n", kcm.LogTail(60))
	}
	return code, nil
}
