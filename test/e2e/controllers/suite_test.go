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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
	"slimgate.dev/slimgate/pkg/admission"
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
	// webhookRequests counts the API requests the webhook makes.
	webhookRequests *devcluster.Requests
}

var e2e suite

func TestMain(m *testing.M) {
	requests := &devcluster.Requests{}
	os.Exit(webhooktest.Main(webhooktest.Setup{
		Env: devcluster.Env{Root: filepath.Join("..", "..", ".."),
			ExtraCRDDirs: []string{filepath.Join("..", "..", "..", "config", "crd", "openreports")}},
		LogsEnv: "E2E_WEBHOOK_LOGS",
		Options: func(o *app.Options) {
			// Only the controllers' service accounts are trusted, not the
			// controller manager's own user: the controllers' children
			// are kept only if their requests carry those identities.
			o.ControllerIdentities = slices.DeleteFunc(admission.DefaultControllerIdentities(), func(id string) bool {
				return id == devcluster.ControllerManagerUser
			})
			// A stop takes at most a second, so that an outage is as
			// short as a test makes it.
			o.ShutdownTimeout = time.Second
			// The background scan, quick to follow changes; it elects
			// its replica with a Lease in the release namespace (created
			// below: the election retries until it exists).
			o.ScanInterval, o.ScanDebounce = time.Hour, 300*time.Millisecond
			if os.Getenv("SLIMGATE_BENCH") != "" {
				// The measurements run the scan as it runs in production:
				// a scan 300 ms after every change is a test's haste.
				o.ScanDebounce = controller.DefaultScanDebounce
			}
			o.Config = rest.CopyConfig(o.Config)
			o.Config.Wrap(requests.Wrap)
		},
	}, func(s *webhooktest.Suite) int {
		code, err := withControllers(m, s, requests)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return code
	}))
}

// withControllers runs kube-controller-manager against the suite's
// control plane while the tests run.
func withControllers(m *testing.M, s *webhooktest.Suite, requests *devcluster.Requests) (int, error) {
	var out io.Writer
	if os.Getenv("E2E_KCM_LOGS") != "" {
		out = os.Stderr
	}
	// Unthrottled, as BenchmarkRollout50 measures the webhook's share.
	kcm, err := devcluster.ControllerManager{ServiceAccountCredentials: true, QPS: 1000, Burst: 2000, Output: out}.Start(context.Background(), s.Env, time.Minute)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := kcm.Stop(10 * time.Second); errors.Is(err, devcluster.ErrNotStopped) {
			fmt.Fprintln(os.Stderr, "kube-controller-manager did not stop in time")
		}
	}()
	// The release namespace, where the webhook publishes the Pod
	// creations it reviewed (for telling unreviewed ones apart).
	release := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app.DefaultNamespace}}
	if err := s.Client.Create(context.Background(), release); client.IgnoreAlreadyExists(err) != nil {
		return 0, err
	}
	e2e = suite{Suite: s, client: s.Client, kcm: kcm, reg: s.Registries, webhookRequests: requests}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kube-controller-manager's last lines:\n%s\n", kcm.LogTail(60))
	}
	return code, nil
}
