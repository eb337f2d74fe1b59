package controllers

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// noopNamespace is a namespace slimgate's webhook configuration leaves
// out (as kube-public, the floor's), for the no-op webhook.
const noopNamespace = "kube-node-lease"

// startNoopWebhook serves an admission webhook that reads each review's
// uid and allows it, over TLS with the suite's serving certificate and
// HTTP/1.1 (as slimgate serves), and registers it for namespace ns with
// the rules of slimgate's pods and workloads webhooks: what any webhook
// costs a rollout on this machine. Both are removed when tb ends.
func startNoopWebhook(tb testing.TB, ns string) {
	tb.Helper()
	wio := e2e.Env.WebhookInstallOptions
	cert, err := tls.LoadX509KeyPair(filepath.Join(wio.LocalServingCertDir, "tls.crt"), filepath.Join(wio.LocalServingCertDir, "tls.key"))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(allowReview)}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			tb.Error(err)
		}
	}()
	tb.Cleanup(func() { _ = srv.Close() })

	if len(wio.ValidatingWebhooks) != 1 {
		tb.Fatalf("%d validating webhook configurations installed, want slimgate's", len(wio.ValidatingWebhooks))
	}
	slim := wio.ValidatingWebhooks[0]
	url := "https://" + ln.Addr().(*net.TCPAddr).String() + "/noop"
	noop := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "e2e-noop-" + rand.String(6)}}
	for _, w := range slim.Webhooks {
		if w.Name != "pods.slimgate.dev" && w.Name != "workloads.slimgate.dev" {
			continue
		}
		w.Name = "noop-" + w.Name
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: wio.LocalServingCAData}
		w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
		noop.Webhooks = append(noop.Webhooks, w)
	}
	if len(noop.Webhooks) != 2 {
		tb.Fatalf("slimgate's webhook configuration %s has %d of the pods and workloads webhooks", slim.Name, len(noop.Webhooks))
	}
	if err := e2e.client.Create(context.Background(), noop); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e2e.client.Delete(context.Background(), noop) })
}

// allowReview answers an AdmissionReview with its uid, allowed.
func allowReview(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}
