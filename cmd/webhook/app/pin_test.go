package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// mutatingConfiguration is config/webhook/pinning's configuration as
// installed in ns, without a caBundle yet.
func mutatingConfiguration(t *testing.T, ns string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	readConfig(t, &mwc, "webhook", "pinning", "mutating.yaml")
	for i, w := range mwc.Webhooks {
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != app.PinPath {
			t.Fatalf("webhook %s: want a service clientConfig on %s", w.Name, app.PinPath)
		}
		mwc.Webhooks[i].ClientConfig.Service.Namespace = ns
	}
	return &mwc
}

// With PinDigests and self-managed certificates the webhook injects its CA
// into the MutatingWebhookConfiguration of the same name as the
// validating one, with config/rbac's permissions, and serves PinPath: a
// Pod CREATE posted there, as the API server would with that CA, is
// answered.
func TestPinDigestsWithCertRotation(t *testing.T) {
	needAPIServer(t)
	ctx := context.Background()
	ns := releaseNamespace(t)
	mwc := mutatingConfiguration(t, ns)
	createAll(t, webhookConfiguration(t, ns), mwc)

	o := options(t)
	o.Config = installRBAC(t, ns)
	o.CertRotation, o.PinDigests, o.Namespace = true, true, ns
	o.Registerer = prometheus.NewRegistry()
	waitReady(t, o, webhooktest.Start(t, o))

	var secret corev1.Secret
	if err := kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: "slimgate-webhook-tls"}, &secret); err != nil {
		t.Fatal(err)
	}
	ca := secret.Data["ca.crt"]
	err := devcluster.Poll(ctx, 30*time.Second, func() error {
		var got admissionregistrationv1.MutatingWebhookConfiguration
		if err := kube.Get(ctx, client.ObjectKeyFromObject(mwc), &got); err != nil {
			return err
		}
		if !bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, ca) {
			return fmt.Errorf("webhook %s: caBundle is not the generated CA (%d bytes)", got.Webhooks[0].Name, len(got.Webhooks[0].ClientConfig.CABundle))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	answer := postPinReview(t, o, "slimgate-webhook."+ns+".svc", ca, app.PinPath)
	if answer.Response == nil || !answer.Response.Allowed || len(answer.Response.Patch) != 0 {
		t.Errorf("answer %+v, want allowed without a patch (no policy applies)", answer.Response)
	}
}

// postPinReview posts a Pod CREATE review to path over TLS, trusting ca for
// serverName, and decodes the answer.
func postPinReview(t *testing.T, o app.Options, serverName string, ca []byte, path string) admissionv1.AdmissionReview {
	t.Helper()
	body := webhooktest.PodReview(t, "pin", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}}})
	c := webhooktest.Client(t, webhooktest.ClientTLS{CA: ca, ServerName: serverName})
	url := "https://" + net.JoinHostPort(o.Host, fmt.Sprint(o.Port)) + path
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", path, resp.Status)
	}
	var answer admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	return answer
}
