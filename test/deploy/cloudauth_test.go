package deploy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// registryAuth.providers becomes the webhook's --registry-auth-providers,
// read here by the webhook's own flags so that the chart can only pass
// what the webhook accepts; each cloud identity becomes its
// ServiceAccount annotation next to serviceAccount.annotations, and
// Azure's adds the Pod label that AKS's workload identity webhook selects.
// Without registryAuth values there is no flag, label or annotation. An
// identity for a provider that is not on fails the rendering (the schema
// refuses unknown providers and malformed identities:
// TestChartRefusesBadValues).
func TestChartRegistryAuth(t *testing.T) {
	needHelm(t)
	const want = "registryAuth.gcpServiceAccount is set but registryAuth.providers does not list gcr"
	if _, err := helmTemplate("registryAuth.providers={ecr}", "registryAuth.gcpServiceAccount=slimgate@project.iam.gserviceaccount.com"); err == nil ||
		!strings.Contains(err.Error(), want) {
		t.Errorf("a Google identity without the gcr provider: error %v, want one saying %q", err, want)
	}
	const (
		role     = "arn:aws:iam::123456789012:role/slimgate"
		gsa      = "slimgate@project.iam.gserviceaccount.com"
		clientID = "11111111-2222-3333-4444-555555555555"
	)
	for _, c := range []struct {
		name            string
		set             []string
		wantProviders   []string
		wantAnnotations map[string]string
		wantAzureLabel  bool
	}{
		{name: "off"},
		{
			name:          "node identities",
			set:           []string{"registryAuth.providers={ecr,gcr,acr}"},
			wantProviders: []string{"ecr", "gcr", "acr"},
		},
		{
			name: "workload identities",
			set: []string{"registryAuth.providers={acr,ecr,gcr}", "registryAuth.awsRoleArn=" + role,
				"registryAuth.gcpServiceAccount=" + gsa, "registryAuth.azureClientId=" + clientID, "serviceAccount.annotations.team=platform"},
			wantProviders: []string{"acr", "ecr", "gcr"},
			wantAnnotations: map[string]string{"eks.amazonaws.com/role-arn": role, "iam.gke.io/gcp-service-account": gsa,
				"azure.workload.identity/client-id": clientID, "team": "platform"},
			wantAzureLabel: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRenderChart(t, c.set...)
			o := webhookFlags(t, webhookArgs(t, objs))
			if diff := cmp.Diff(c.wantProviders, o.RegistryAuthProviders); diff != "" {
				t.Errorf("providers (-want +got):\n%s", diff)
			}
			var sa corev1.ServiceAccount
			if err := find(objs, "ServiceAccount", "slimgate", &sa); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.wantAnnotations, sa.Annotations); diff != "" {
				t.Errorf("ServiceAccount annotations (-want +got):\n%s", diff)
			}
			var d appsv1.Deployment
			if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
				t.Fatal(err)
			}
			if got := d.Spec.Template.Labels["azure.workload.identity/use"] == "true"; got != c.wantAzureLabel {
				t.Errorf("Pod labels %v: azure.workload.identity/use is %t, want %t", d.Spec.Template.Labels, got, c.wantAzureLabel)
			}
			if d.Spec.Template.Labels["app.kubernetes.io/name"] != "slimgate" {
				t.Errorf("Pod labels %v lost the chart's own", d.Spec.Template.Labels)
			}
		})
	}
}
