package app_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// TestRegistryLabelsFollowPolicies: the registry label of
// slimgate_registry_requests_total names the registries the policies name;
// every host an image reference merely mentions is "other".
func TestRegistryLabelsFollowPolicies(t *testing.T) {
	needAPIServer(t)
	ctx := context.Background()
	srv := httptest.NewServer(devcluster.NewRegistry())
	t.Cleanup(srv.Close)
	named := strings.TrimPrefix(srv.URL, "http://")

	o := options(t)
	metrics := prometheus.NewRegistry()
	o.Registerer = metrics
	writeSelfSigned(t, o.CertDir)
	waitReady(t, o, webhooktest.Start(t, o))
	createPolicy(t, v1alpha1.ModeAudit, named)

	addr := "https://" + net.JoinHostPort(o.Host, fmt.Sprint(o.Port)) + app.PodsPath + "?timeout=10s"
	hc := tlsClient(t, filepath.Join(o.CertDir, "tls.crt"))
	images := []string{named + "/app:1"}
	for i := range 5 {
		images = append(images, fmt.Sprintf("127.0.0.%d:1/app:1", i+2)) // refused at once
	}
	var got map[string]bool
	err := devcluster.Poll(ctx, 30*time.Second, func() error {
		for i, image := range images {
			r := postReview(hc, addr, podReview(t, types.UID(rand.String(8)), "default", fmt.Sprintf("p%d", i), image))
			if r.err != nil {
				return r.err
			}
		}
		var err error
		if got, err = devcluster.LabelValues(metrics, "slimgate_registry_requests_total", "registry"); err != nil {
			return err
		}
		if !got[named] || !got["other"] {
			return fmt.Errorf("registry labels %v, want %s and other", slices.Sorted(maps.Keys(got)), named)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for l := range got {
		if l != named && l != "other" {
			t.Errorf("registry label %q: neither named by a policy nor other", l)
		}
	}
}
