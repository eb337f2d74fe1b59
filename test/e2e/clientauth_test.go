package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// clientCAName is where the webhook finds the CA of its callers, inside
// its certificate folder (--client-ca-name).
const clientCAName = "client-ca/ca.crt"

// TestClientCertificateRequired runs a control plane of its own whose API
// server presents a client certificate to the webhook (an
// AdmissionConfiguration whose kubeconfig names the webhook's address),
// and a webhook that requires one signed by that certificate's CA. The API
// server's reviews still reach the webhook: a Pod with a Go SDK is denied.
// Anyone else who reaches the port is refused during the TLS handshake,
// before a review is read: no answer, no Event in the namespace the review
// claims. The same review posted with the API server's certificate is
// answered and recorded, so the refusal is the certificate's doing.
func TestClientCertificateRequired(t *testing.T) {
	ctx := context.Background()
	ca, apiCert, apiKey := clientCert(t, "slimgate-e2e-webhook-callers")
	port, err := devcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	const host = "127.0.0.1"
	webhookAddr := net.JoinHostPort(host, strconv.Itoa(port))
	admissionConfig, err := devcluster.WriteAdmissionConfig(t.TempDir(), webhookAddr, apiCert, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	env, cfg, err := devcluster.Env{Root: filepath.Join("..", ".."), Webhooks: true, Configure: func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().Append("admission-control-config-file", admissionConfig)
		env.WebhookInstallOptions.LocalServingHost, env.WebhookInstallOptions.LocalServingPort = host, port
	}}.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	wio := &env.WebhookInstallOptions

	// The CA sits in the certificate folder, as the chart mounts it.
	caFile := filepath.Join(wio.LocalServingCertDir, clientCAName)
	if err := os.MkdirAll(filepath.Dir(caFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := webhooktest.Options(cfg, wio.LocalServingHost, wio.LocalServingPort, wio.LocalServingCertDir)
	if err != nil {
		t.Fatal(err)
	}
	o.ClientCAName, o.DefaultTimeout = clientCAName, webhookTimeout
	o.Registerer = prometheus.NewRegistry() // the suite's webhook runs in this process too
	if err := webhooktest.WaitReady(ctx, o, webhooktest.Start(t, o)); err != nil {
		t.Fatalf("webhook: %v", err)
	}
	c, err := devcluster.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "callers"}, Spec: spec(v1alpha1.ModeEnforce, nil)}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	const ns = metav1.NamespaceDefault

	// (1) Strangers: a plain HTTPS client, and one whose certificate
	// another CA signed. The server's certificate is trusted, so only the
	// client's identity is wrong.
	_, strangerCert, strangerKey := clientCert(t, "stranger")
	url := "https://" + webhookAddr + app.PodsPath
	review := webhooktest.PodReview(t, "review-probe", pod(ns, "probe", e2e.reg.GoSDKApp()))
	for _, caller := range []struct {
		name      string
		cert, key []byte
		alert     string
	}{
		{"no certificate", nil, nil, "tls: certificate required"},
		{"certificate of another CA", strangerCert, strangerKey, "tls: unknown certificate authority"},
	} {
		hc := webhooktest.Client(t, webhooktest.ClientTLS{CA: wio.LocalServingCAData, CertPEM: caller.cert, KeyPEM: caller.key})
		resp, err := hc.Post(url, "application/json", bytes.NewReader(review))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Errorf("%s: answered %s: %s", caller.name, resp.Status, body)
			continue
		}
		// TLS 1.3 ends the handshake on the client's side before the
		// server has checked the certificate: the refusal arrives as an
		// alert on the first read.
		if !strings.Contains(err.Error(), caller.alert) {
			t.Errorf("%s: %v, want the alert %q", caller.name, err, caller.alert)
		}
	}

	// (2) The API server: it presents its certificate, the fat Pod is
	// denied with the evidence and recorded.
	fat := pod(ns, "fat", e2e.reg.GoSDKApp())
	eventually(t, 20*time.Second, func() error { // until the webhook's cache has the policy
		err := c.Create(ctx, fat.DeepCopy(), client.DryRunAll)
		switch {
		case err == nil:
			return errAdmitted
		case apierrors.IsForbidden(err):
			return nil
		}
		return err
	})
	err = c.Create(ctx, fat)
	mustDeny(t, err, "["+p.Name+"]", e2e.reg.GoSDKApp(), "toolchain.go")
	mentionsGoSDK(t, err.Error())

	// (3) The positive control: the stranger's review, posted with the
	// API server's certificate, is answered and records an Event.
	resp, err := webhooktest.Client(t, webhooktest.ClientTLS{CA: wio.LocalServingCAData, CertPEM: apiCert, KeyPEM: apiKey}).
		Post(url, "application/json", bytes.NewReader(webhooktest.PodReview(t, "review-control", pod(ns, "control", e2e.reg.GoSDKApp()))))
	if err != nil {
		t.Fatalf("posting with the API server's certificate: %v", err)
	}
	var answer admissionv1.AdmissionReview
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || answer.Response == nil || answer.Response.Allowed {
		t.Fatalf("with the API server's certificate: %s, %+v, %v; want a denial", resp.Status, answer.Response, err)
	}

	// Events are recorded in order: once the later ones are there, the
	// strangers' would be too.
	var got []eventsv1.Event
	eventually(t, 15*time.Second, func() error {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		got = list.Items
		for _, want := range []string{"fat", "control"} {
			if !hasEvent(got, want, "ImageRejected") {
				return fmt.Errorf("no ImageRejected event regarding %s among %d", want, len(got))
			}
		}
		return nil
	})
	for _, e := range got {
		if e.Regarding.Name == "probe" {
			t.Errorf("a refused caller made the webhook record %s: %s", e.Reason, e.Note)
		}
	}
}

// hasEvent reports whether evs has one with this reason regarding name.
func hasEvent(evs []eventsv1.Event, name, reason string) bool {
	for _, e := range evs {
		if e.Regarding.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}

// clientCert makes a CA named caName and a client certificate for
// kube-apiserver that it signs (PEM).
func clientCert(t *testing.T, caName string) (ca *devcluster.CA, certPEM, keyPEM []byte) {
	t.Helper()
	ca, err := devcluster.NewCA(caName)
	if err != nil {
		t.Fatal(err)
	}
	if certPEM, keyPEM, err = ca.ClientCert("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	return ca, certPEM, keyPEM
}
