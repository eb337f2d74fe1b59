package deploy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// renderDefault runs kustomize build config/default.
func renderDefault(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	needKustomize(t)
	objs, err := kustomizeBuild(configDir + "/default")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestKustomizeDefault(t *testing.T) {
	objs := renderDefault(t)
	want := []string{
		"Certificate/slimgate-serving-cert", "ClusterRole/slimgate", "ClusterRole/" + exceptionEditorRole, "ClusterRoleBinding/slimgate",
		"CustomResourceDefinition/reports.openreports.io", "CustomResourceDefinition/slimimageexceptions.slimgate.dev",
		"CustomResourceDefinition/slimimagepolicies.slimgate.dev", "Deployment/slimgate-webhook",
		"Issuer/slimgate-selfsigned-issuer", "Namespace/slimgate-system", "PodDisruptionBudget/slimgate-webhook", "Role/slimgate", "RoleBinding/slimgate",
		"Service/slimgate-webhook", "ServiceAccount/slimgate", "ValidatingWebhookConfiguration/slimgate",
	}
	if diff := cmp.Diff(want, names(objs)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	for _, u := range objs {
		switch u.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration":
		default:
			if u.GetNamespace() != releaseNamespace {
				t.Errorf("%s/%s in namespace %q", u.GetKind(), u.GetName(), u.GetNamespace())
			}
		}
	}

	// cert-manager wiring: the Certificate names the Service, its Secret is
	// what the Deployment mounts, and the CA goes into the webhooks.
	var cert struct {
		Spec struct {
			DNSNames   []string `json:"dnsNames"`
			SecretName string   `json:"secretName"`
			IssuerRef  struct {
				Name string `json:"name"`
			} `json:"issuerRef"`
		} `json:"spec"`
	}
	if err := find(objs, "Certificate", "slimgate-serving-cert", &cert); err != nil {
		t.Fatal(err)
	}
	wantDNS := []string{"slimgate-webhook.slimgate-system.svc", "slimgate-webhook.slimgate-system.svc.cluster.local"}
	if diff := cmp.Diff(wantDNS, cert.Spec.DNSNames); diff != "" {
		t.Errorf("certificate dnsNames (-want +got):\n%s", diff)
	}
	if cert.Spec.IssuerRef.Name != "slimgate-selfsigned-issuer" {
		t.Errorf("issuerRef %q", cert.Spec.IssuerRef.Name)
	}
	var d appsv1.Deployment
	if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
		t.Fatal(err)
	}
	if c := d.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != "ghcr.io/slimgate/slimgate-webhook:latest" {
		t.Errorf("containers %+v, want the webhook image", c)
	}
	mounted := ""
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			mounted = v.Secret.SecretName
		}
	}
	if mounted != cert.Spec.SecretName {
		t.Errorf("the Deployment mounts Secret %q, the Certificate writes %q", mounted, cert.Spec.SecretName)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := find(objs, "ValidatingWebhookConfiguration", "slimgate", &vwc); err != nil {
		t.Fatal(err)
	}
	if got := vwc.Annotations["cert-manager.io/inject-ca-from"]; got != "slimgate-system/slimgate-serving-cert" {
		t.Errorf("inject-ca-from %q", got)
	}
	for _, w := range vwc.Webhooks {
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Namespace != releaseNamespace {
			t.Errorf("webhook %s clientConfig %+v", w.Name, w.ClientConfig)
		}
		checkExcluded(t, w.Name, w.NamespaceSelector)
	}
}

// config/default is accepted by the real API server, without Pod Security
// warnings (its namespace enforces the restricted level).
func TestKustomizeDefaultDryRun(t *testing.T) {
	if w := dryRunWarnings(t, renderDefault(t)); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}
}
