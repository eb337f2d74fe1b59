package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/policy"
)

// variant is a set of chart values and what its rendering must show.
type variant struct {
	name string
	set  []string
	// mode and optIn describe the policy; failurePolicy the webhooks.
	mode          v1alpha1.Mode
	optIn         bool
	failurePolicy admissionregistrationv1.FailurePolicyType
	// certManager: cert-manager issues the certificate; otherwise the
	// webhook rotates its own.
	certManager bool
	// pullSecrets: pull-secret auth, and so read access to secrets and
	// service accounts.
	pullSecrets bool
	// extra lists objects beyond those every variant renders.
	extra []string
	// noReportsCRD: reports.installCRD=false, the Report CRD is not rendered.
	noReportsCRD bool
}

var variants = []variant{
	{name: "default", mode: v1alpha1.ModeEnforce, failurePolicy: admissionregistrationv1.Ignore, pullSecrets: true},
	{name: "opt-in", set: []string{"policy.scope=opt-in"},
		mode: v1alpha1.ModeEnforce, optIn: true, failurePolicy: admissionregistrationv1.Ignore, pullSecrets: true},
	{name: "audit-only", set: []string{"policy.mode=Audit"},
		mode: v1alpha1.ModeAudit, failurePolicy: admissionregistrationv1.Ignore, pullSecrets: true},
	{name: "cert-manager", set: []string{"certManager.enabled=true"},
		mode: v1alpha1.ModeEnforce, failurePolicy: admissionregistrationv1.Ignore, certManager: true, pullSecrets: true,
		extra: []string{"Certificate/slimgate-serving-cert", "Issuer/slimgate-selfsigned"}},
	{name: "everything-else", set: []string{
		"certManager.enabled=true", "certManager.issuerRef.kind=ClusterIssuer", "certManager.issuerRef.name=corp-ca",
		"certManager.issuerRef.group=cert-manager.io",
		"metrics.serviceMonitor.enabled=true", "networkPolicy.enabled=true",
		// "" unsets minAvailable; null would too, but helm lint restores
		// the default before checking the schema (TestChartAcceptsValueForms
		// renders the null form).
		"podDisruptionBudget.minAvailable=", "podDisruptionBudget.maxUnavailable=1",
		"webhook.pullSecretAuth=false", "webhook.failurePolicy=Fail", "webhook.namespaceSelector.matchLabels.team=a",
		"policy.mode=Warn", "policy.scope=opt-in", "dashboard.enabled=true", "reports.installCRD=false"},
		mode: v1alpha1.ModeWarn, optIn: true, failurePolicy: admissionregistrationv1.Fail, certManager: true, noReportsCRD: true,
		extra: []string{"Certificate/slimgate-serving-cert", "NetworkPolicy/slimgate-webhook", "ServiceMonitor/slimgate", "ConfigMap/slimgate-dashboard"}},
}

// objectsOf lists the objects a variant renders, as Kind/name, sorted.
func (v variant) objectsOf() []string {
	out := []string{
		"ClusterRole/slimgate", "ClusterRole/" + exceptionEditorRole, "ClusterRoleBinding/slimgate", "Deployment/slimgate-webhook",
		"PodDisruptionBudget/slimgate-webhook", "Role/slimgate-reviews", "RoleBinding/slimgate-reviews", "Service/slimgate-metrics",
		"Service/slimgate-webhook", "ServiceAccount/slimgate", "SlimImagePolicy/default", "ValidatingWebhookConfiguration/slimgate",
		"Role/slimgate-scan", "RoleBinding/slimgate-scan",
	}
	if !v.noReportsCRD {
		out = append(out, "CustomResourceDefinition/reports.openreports.io")
	}
	if !v.certManager {
		out = append(out, "Role/slimgate-certs", "RoleBinding/slimgate-certs")
	}
	out = append(out, v.extra...)
	slices.Sort(out)
	return out
}

func names(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, u := range objs {
		out = append(out, u.GetKind()+"/"+u.GetName())
	}
	slices.Sort(out)
	return out
}

func TestHelmLint(t *testing.T) {
	needHelm(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			if err := helmLint(v.set...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// schemaRefusal starts helm's message for values values.schema.json
// refuses, before anything is rendered.
const schemaRefusal = "values don't meet the specifications of the schema(s)"

// Values the chart's schema (values.schema.json) refuses, with its
// message, rather than rendering objects the API server or the webhook
// would reject later.
func TestChartRefusesBadValues(t *testing.T) {
	needHelm(t)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"policy.scope=everywhere"}, "at '/policy/scope': value must be one of 'cluster', 'opt-in'"},
		{[]string{"policy.mode=Block"}, "at '/policy/mode': value must be one of 'Enforce', 'Warn', 'Audit'"},
		{[]string{"policy.onInspectionError=allow"}, "at '/policy/onInspectionError': value must be one of 'Allow', 'Deny'"},
		{[]string{"policy.existingWorkloads=keep"}, "at '/policy/existingWorkloads': value must be one of 'Keep', 'Judge'"},
		{[]string{`webhook.controllerIdentities[0]=a\,b`}, "at '/webhook/controllerIdentities/0'"},
		{[]string{"policy.sizeBudget.maxLayers=0"}, "at '/policy/sizeBudget/maxLayers': minimum: got 0, want 1"},
		{[]string{"policy.sizeBudget.maxCompressed=1 GB"}, "at '/policy/sizeBudget/maxCompressed'"},
		{[]string{"policy.platforms[0]=linux"}, "at '/policy/platforms/0'"},
		{[]string{"webhook.failurePolicy=Maybe"}, "at '/webhook/failurePolicy': value must be one of 'Ignore', 'Fail'"},
		{[]string{"webhook.timeoutSeconds=31"}, "at '/webhook/timeoutSeconds': maximum: got 31, want 30"},
		{[]string{"webhook.timeoutSeconds=0"}, "at '/webhook/timeoutSeconds': minimum: got 0, want 1"},
		{[]string{"webhook.timeoutSeconds=ten"}, "at '/webhook/timeoutSeconds': got string, want integer"},
		{[]string{"webhook.port=70000"}, "at '/webhook/port': maximum: got 70,000, want 65,535"},
		{[]string{"webhook.inspectConcurrency=0"}, "at '/webhook/inspectConcurrency': minimum: got 0, want 1"},
		{[]string{"webhook.namespaceSelector.matchExpressions[0].key=team", "webhook.namespaceSelector.matchExpressions[0].operator=Is"},
			"at '/webhook/namespaceSelector/matchExpressions/0/operator': value must be one of 'In', 'NotIn', 'Exists', 'DoesNotExist'"},
		{[]string{"webhook.extraArgs[0]=-v"}, "at '/webhook/extraArgs/0': '-v' does not match pattern"},
		{[]string{"replicaCount=0"}, "at '/replicaCount': minimum: got 0, want 1"},
		{[]string{"image.digest=sha256:abc"}, "at '/image/digest': 'sha256:abc' does not match pattern"},
		{[]string{"image.pullPolicy=Sometimes"}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"},
		{[]string{"topologySpread.whenUnsatisfiable=Never"}, "at '/topologySpread/whenUnsatisfiable'"},
		{[]string{"certManager.duration=90 days"}, "at '/certManager/duration': '90 days' does not match pattern"},
		// minAvailable defaults to 1: setting maxUnavailable alone sets both.
		{[]string{"podDisruptionBudget.maxUnavailable=1"}, "at '/podDisruptionBudget/minAvailable': value must be one of '', <nil>"},
		{[]string{"podDisruptionBudget.minAvailable=half"}, "at '/podDisruptionBudget/minAvailable'"},
		{[]string{"registryAuth.providers={quay}"}, "at '/registryAuth/providers/0': value must be one of 'ecr', 'gcr', 'acr'"},
		{[]string{"registryAuth.providers={ecr,ecr}"}, "at '/registryAuth/providers'"},
		{[]string{"registryAuth.providers={ecr}", "registryAuth.awsRoleArn=slimgate"}, "at '/registryAuth/awsRoleArn'"},
		{[]string{"registryAuth.providers={acr}", "registryAuth.azureClientId=slimgate"}, "at '/registryAuth/azureClientId'"},
		// A misspelt key would otherwise be ignored silently.
		{[]string{"webook.failurePolicy=Fail"}, "at '': additional properties 'webook' not allowed"},
		{[]string{"policy.exclude.image[0]=foo"}, "at '/policy/exclude': additional properties 'image' not allowed"},
	} {
		t.Run(strings.Join(c.set, ","), func(t *testing.T) {
			_, err := helmTemplate(c.set...)
			if err == nil || !strings.Contains(err.Error(), schemaRefusal) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template %v: error %v, want the schema's refusal saying %q", c.set, err, c.want)
			}
		})
	}
}

// Values the schema accepts besides the variants below: the other ways
// to write a value, and turning a PodDisruptionBudget limit off.
func TestChartAcceptsValueForms(t *testing.T) {
	needHelm(t)
	for _, set := range [][]string{
		{"podDisruptionBudget.minAvailable=null", "podDisruptionBudget.maxUnavailable=50%"},
		{"podDisruptionBudget.minAvailable=", "podDisruptionBudget.maxUnavailable=1"},
		{"podDisruptionBudget.enabled=false", "podDisruptionBudget.maxUnavailable=1"},
		{"podDisruptionBudget.minAvailable=50%"},
		{"policy.sizeBudget.maxCompressed=500000000", "policy.sizeBudget.maxLayers=10"},
		{"policy.sizeBudget.maxCompressed=1.5Gi"},
		{"policy.platforms[0]=linux/arm64/v8"},
		{"image.digest=sha256:" + strings.Repeat("ab", 32)},
		{"webhook.namespaceSelector.matchExpressions[0].key=team", "webhook.namespaceSelector.matchExpressions[0].operator=Exists"},
		{"webhook.extraArgs[0]=--zap-log-level=debug"},
	} {
		t.Run(strings.Join(set, ","), func(t *testing.T) {
			if _, err := renderChart(set...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The schema's enums are the CRD's: a mode or inspection-error action the
// API server accepts is one the chart accepts, and no other.
func TestSchemaEnumsMatchCRD(t *testing.T) {
	var schema struct {
		Properties struct {
			Policy struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"policy"`
		} `json:"properties"`
	}
	data, err := os.ReadFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema struct {
						Properties struct {
							Spec struct {
								Properties map[string]struct {
									Enum []string `json:"enum"`
								} `json:"properties"`
							} `json:"spec"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	data, err = os.ReadFile(generatedCRD)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 {
		t.Fatalf("%d CRD versions", len(crd.Spec.Versions))
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties.Spec.Properties
	for _, field := range []string{"mode", "onInspectionError", "existingWorkloads"} {
		want, got := spec[field].Enum, schema.Properties.Policy.Properties[field].Enum
		if len(want) == 0 {
			t.Errorf("the CRD has no enum for spec.%s", field)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("policy.%s: CRD (-) and values.schema.json (+) differ:\n%s", field, diff)
		}
	}
}

func TestHelmTemplate(t *testing.T) {
	needHelm(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := mustRenderChart(t, v.set...)
			if diff := cmp.Diff(v.objectsOf(), names(objs)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			for _, u := range objs {
				if got := u.GetLabels()["app.kubernetes.io/name"]; got != "slimgate" {
					t.Errorf("%s/%s: label app.kubernetes.io/name is %q", u.GetKind(), u.GetName(), got)
				}
			}
			checkPolicy(t, v, objs)
			checkWebhookConfig(t, v, objs)
			checkDeployment(t, v, objs)
			checkRBAC(t, v, objs)
		})
	}
}

// loadRenderedPolicy returns the one rendered SlimImagePolicy object and
// the policy loaded from it the way `slimgate check --policy` does:
// strictly, so an unknown or misspelt field fails.
func loadRenderedPolicy(t *testing.T, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, *v1alpha1.SlimImagePolicy) {
	t.Helper()
	p := ofKind(objs, "SlimImagePolicy")
	if len(p) != 1 {
		t.Fatalf("%d SlimImagePolicy objects", len(p))
	}
	doc, err := yaml.Marshal(p[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	got, err := policy.Load(doc)
	if err != nil {
		t.Fatalf("the rendered policy does not load: %v\n%s", err, doc)
	}
	return p, got
}

// checkPolicy checks the rendered SlimImagePolicy, loaded strictly, against
// the built-in default.
func checkPolicy(t *testing.T, v variant, objs []*unstructured.Unstructured) {
	t.Helper()
	_, got := loadRenderedPolicy(t, objs)
	if errs := policy.Validate(&got.Spec); len(errs) > 0 {
		t.Errorf("the rendered policy is invalid: %v", errs.ToAggregate())
	}
	want := policy.Default().Spec
	want.Mode = v.mode
	if v.optIn {
		want.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"slimgate.dev/enabled": "true"}}
	}
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("policy spec, compared with the built-in default (-want +got):\n%s", diff)
	}
}

func checkWebhookConfig(t *testing.T, v variant, objs []*unstructured.Unstructured) {
	t.Helper()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := find(objs, "ValidatingWebhookConfiguration", "slimgate", &vwc); err != nil {
		t.Fatal(err)
	}
	inject := vwc.Annotations["cert-manager.io/inject-ca-from"]
	if want := releaseNamespace + "/slimgate-serving-cert"; v.certManager && inject != want {
		t.Errorf("inject-ca-from annotation %q, want %q", inject, want)
	}
	if !v.certManager && inject != "" {
		t.Errorf("inject-ca-from annotation %q without cert-manager", inject)
	}
	paths := map[string]string{}
	for _, w := range vwc.Webhooks {
		svc := w.ClientConfig.Service
		if svc == nil || svc.Path == nil {
			t.Errorf("webhook %s has no service path", w.Name)
			continue
		}
		paths[w.Name] = svc.Name + "." + svc.Namespace + *svc.Path
		// The preview webhooks never deny, whatever the values say.
		failurePolicy, sideEffects, timeout := v.failurePolicy, admissionregistrationv1.SideEffectClassNoneOnDryRun, int32(10)
		if strings.HasPrefix(w.Name, "preview-") {
			failurePolicy, sideEffects, timeout = admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone, 3
		}
		if w.FailurePolicy == nil || *w.FailurePolicy != failurePolicy {
			t.Errorf("webhook %s failurePolicy %v, want %s", w.Name, w.FailurePolicy, failurePolicy)
		}
		if w.SideEffects == nil || *w.SideEffects != sideEffects {
			t.Errorf("webhook %s sideEffects %v, want %s", w.Name, w.SideEffects, sideEffects)
		}
		if w.TimeoutSeconds == nil || *w.TimeoutSeconds != timeout {
			t.Errorf("webhook %s timeoutSeconds %v, want %d", w.Name, w.TimeoutSeconds, timeout)
		}
		checkExcluded(t, w.Name, w.NamespaceSelector)
	}
	want := map[string]string{
		"pods.slimgate.dev":               "slimgate-webhook." + releaseNamespace + "/validate-pods",
		"workloads.slimgate.dev":          "slimgate-webhook." + releaseNamespace + "/validate-workloads",
		"exceptions.slimgate.dev":         "slimgate-webhook." + releaseNamespace + "/validate-exceptions",
		"preview-namespaces.slimgate.dev": "slimgate-webhook." + releaseNamespace + "/preview-namespaces",
		"preview-policies.slimgate.dev":   "slimgate-webhook." + releaseNamespace + "/preview-policies",
	}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("webhooks (-want +got):\n%s", diff)
	}
}

// checkExcluded checks a namespaceSelector never matches the namespaces
// slimgate must leave alone.
func checkExcluded(t *testing.T, webhook string, sel *metav1.LabelSelector) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("webhook %s: %v", webhook, err)
	}
	for _, ns := range []string{"kube-system", "kube-node-lease", "kube-public", releaseNamespace} {
		nsLabels := map[string]string{"kubernetes.io/metadata.name": ns, "team": "a", "slimgate.dev/enabled": "true"}
		if s.Matches(labels.Set(nsLabels)) {
			t.Errorf("webhook %s judges namespace %s", webhook, ns)
		}
	}
	if !s.Matches(labels.Set{"kubernetes.io/metadata.name": "apps", "team": "a"}) {
		t.Errorf("webhook %s does not judge an ordinary namespace (selector %v)", webhook, s)
	}
}

func checkDeployment(t *testing.T, v variant, objs []*unstructured.Unstructured) {
	t.Helper()
	var d appsv1.Deployment
	if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "slimgate" {
		t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", psc)
	}
	if len(pod.TopologySpreadConstraints) != 1 {
		t.Errorf("topology spread constraints %+v", pod.TopologySpreadConstraints)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v", sc)
	}
	if !strings.HasPrefix(c.Image, "ghcr.io/slimgate/slimgate-webhook:") {
		t.Errorf("image %q", c.Image)
	}
	args := c.Args
	want := []string{"--cert-dir=/certs", fmt.Sprintf("--pull-secret-auth=%t", v.pullSecrets), "--webhook-port=9443",
		"--controller-identities=" + strings.Join(admission.DefaultControllerIdentities(), ",")}
	if !v.certManager {
		want = append(want, "--cert-rotation=true", "--cert-secret-name=slimgate-webhook-tls",
			"--webhook-config-name=slimgate", "--service-name=slimgate-webhook", "--namespace="+releaseNamespace)
	}
	for _, a := range want {
		if !slices.Contains(args, a) {
			t.Errorf("args %q lack %q", args, a)
		}
	}
	if v.certManager && slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--cert-rotation") }) {
		t.Errorf("args %q rotate certificates although cert-manager issues them", args)
	}
	var certs *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == "certs" {
			certs = &pod.Volumes[i]
		}
	}
	switch {
	case certs == nil:
		t.Error("no certs volume")
	case v.certManager && (certs.Secret == nil || certs.Secret.SecretName != "slimgate-webhook-tls"):
		t.Errorf("certs volume %+v, want the cert-manager Secret", certs.VolumeSource)
	case !v.certManager && certs.EmptyDir == nil:
		t.Errorf("certs volume %+v, want an emptyDir the webhook writes", certs.VolumeSource)
	}
}

func checkRBAC(t *testing.T, v variant, objs []*unstructured.Unstructured) {
	t.Helper()
	var cr rbacv1.ClusterRole
	if err := find(objs, "ClusterRole", "slimgate", &cr); err != nil {
		t.Fatal(err)
	}
	grants := tuples(cr.Rules)
	for _, c := range []struct {
		tuple string
		want  bool
	}{
		{"/secrets/get/*", v.pullSecrets},
		{"/serviceaccounts/get/*", v.pullSecrets},
		{"/serviceaccounts/watch/*", v.pullSecrets},
		{"/secrets/list/*", false},
		{"admissionregistration.k8s.io/validatingwebhookconfigurations/patch/slimgate", !v.certManager},
		{"events.k8s.io/events/create/*", true},
		{"apps/replicasets/watch/*", true},
		{"apps/deployments/list/*", true},
		{"batch/cronjobs/watch/*", true},
		{"/replicationcontrollers/list/*", true},
		{"slimgate.dev/slimimagepolicies/status/patch/*", true},
	} {
		if got := slices.Contains(grants, c.tuple); got != c.want {
			t.Errorf("ClusterRole grants %s: %t, want %t", c.tuple, got, c.want)
		}
	}
}

// tuples expands rules into sorted group/resource/verb/resourceName
// strings ("*" when not limited to names).
func tuples(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{"*"}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, verb := range r.Verbs {
					for _, n := range names {
						out = append(out, g+"/"+res+"/"+verb+"/"+n)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// The chart ships a copy of the generated CRD (helm installs crds/ before
// the templates); it must not drift from `make manifests`.
func TestChartCRDIsTheGeneratedOne(t *testing.T) {
	for _, base := range []string{filepath.Base(generatedCRD), "slimgate.dev_slimimageexceptions.yaml"} {
		generated, copied := filepath.Join(filepath.Dir(generatedCRD), base), filepath.Join(filepath.Dir(chartCRD), base)
		want, err := os.ReadFile(generated)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(copied)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, got) {
			t.Errorf("%s differs from %s: copy it after make manifests\n%s", copied, generated, cmp.Diff(string(want), string(got)))
		}
	}
}

// exceptionEditorRole is the ClusterRole the chart ships for the users
// who may write SlimImageExceptions.
const exceptionEditorRole = "slimgate-exception-editor"

// The chart's hand-written RBAC grants exactly what the +kubebuilder:rbac
// markers of the code ask for (config/rbac/role.yaml, generated), with
// pull-secret auth, self-managed certificates and digest pinning on.
func TestChartRBACMatchesMarkers(t *testing.T) {
	needHelm(t)
	data, err := os.ReadFile(configDir + "/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	generated, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	chart := mustRenderChart(t, "webhook.pinDigests=true")
	for _, kind := range []string{"ClusterRole", "Role"} {
		var want, got []rbacv1.PolicyRule
		for _, u := range ofKind(generated, kind) {
			var r rbacv1.ClusterRole // same rules field as Role
			if err := find([]*unstructured.Unstructured{u}, kind, u.GetName(), &r); err != nil {
				t.Fatal(err)
			}
			want = append(want, r.Rules...)
		}
		for _, u := range ofKind(chart, kind) {
			if u.GetName() == exceptionEditorRole {
				continue // for users, not the webhook
			}
			var r rbacv1.ClusterRole
			if err := find([]*unstructured.Unstructured{u}, kind, u.GetName(), &r); err != nil {
				t.Fatal(err)
			}
			got = append(got, r.Rules...)
		}
		if diff := cmp.Diff(tuples(want), tuples(got)); diff != "" {
			t.Errorf("%s: config/rbac (markers) vs chart (-markers +chart):\n%s", kind, diff)
		}
	}
}

// Every chart variant is accepted by the real API server (server-side
// dry-run: schema, defaulting, validation, admission), without warnings:
// the release namespace enforces the restricted Pod Security level, which
// warns about a Deployment whose Pods it would refuse.
func TestChartDryRun(t *testing.T) {
	needHelm(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			// With the CRD copy in crds/, which helm installs first.
			objs := mustRenderChart(t, append([]string{includeCRDs}, v.set...)...)
			if crds := names(objs); !slices.Contains(crds, "CustomResourceDefinition/slimimagepolicies.slimgate.dev") ||
				!slices.Contains(crds, "CustomResourceDefinition/slimimageexceptions.slimgate.dev") {
				t.Fatalf("objects %v lack the CRDs", names(objs))
			}
			if w := dryRunWarnings(t, objs); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
		})
	}

	// The check above can fail: a Deployment whose container may escalate
	// its privileges draws a Pod Security warning.
	t.Run("pod security is enforced", func(t *testing.T) {
		objs := mustRenderChart(t, "securityContext.allowPrivilegeEscalation=true")
		w := dryRunWarnings(t, ofKind(objs, "Deployment"))
		if !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "allowPrivilegeEscalation") }) {
			t.Errorf("no Pod Security warning for allowPrivilegeEscalation=true, got %q", w)
		}
	})
}

// Every key of values.yaml says what it does, in a comment line right
// above it.
func TestValuesAreCommented(t *testing.T) {
	data, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^\s*[A-Za-z][\w.-]*:`)
	lines := strings.Split(string(data), "\n")
	var bare []string
	for i, l := range lines {
		if !key.MatchString(l) {
			continue
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			bare = append(bare, fmt.Sprintf("line %d: %s", i+1, strings.TrimSpace(l)))
		}
	}
	if len(bare) > 0 {
		t.Errorf("values without a comment above them:\n%s", strings.Join(bare, "\n"))
	}
}

// Values removed by the user (set to null) leave their field out of the
// policy rather than rendering an empty one the API server or strict
// loading would refuse.
func TestChartPolicyWithValuesRemoved(t *testing.T) {
	needHelm(t)
	objs := mustRenderChart(t, "policy.toolchains=null", "policy.sizeBudget=null", "policy.exclude=null",
		"policy.registries.allow=null", "policy.onInspectionError=Deny")
	p, got := loadRenderedPolicy(t, objs)
	want := v1alpha1.SlimImagePolicySpec{NamespaceSelector: &metav1.LabelSelector{}, OnInspectionError: v1alpha1.InspectionErrorDeny}
	policy.SetDefaults(&want)
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("policy spec (-want +got):\n%s", diff)
	}
	if err := applyDryRun(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// config/webhook (kustomize) and the chart's template write the same five
// webhooks by hand: they must agree on everything, rules, paths,
// sideEffects, timeouts, failure policy and the namespaces never judged,
// for the chart's default values in the namespace config/default uses.
func TestWebhookConfigurationsMatch(t *testing.T) {
	needHelm(t)
	data, err := os.ReadFile(configDir + "/webhook/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &want); err != nil {
		t.Fatal(err)
	}
	objs := mustRenderChart(t)
	var got admissionregistrationv1.ValidatingWebhookConfiguration
	if err := find(objs, "ValidatingWebhookConfiguration", want.Name, &got); err != nil {
		t.Fatal(err)
	}
	if len(want.Webhooks) != 5 {
		t.Fatalf("config/webhook has %d webhooks, want 5", len(want.Webhooks))
	}
	if diff := cmp.Diff(want.Webhooks, got.Webhooks); diff != "" {
		t.Errorf("webhooks of config/webhook (-) and of the chart (+) differ:\n%s", diff)
	}
	// Both send reviews where the webhook serves them.
	var paths []string
	for _, w := range want.Webhooks {
		if w.ClientConfig.Service != nil && w.ClientConfig.Service.Path != nil {
			paths = append(paths, *w.ClientConfig.Service.Path)
		}
	}
	if diff := cmp.Diff([]string{app.PodsPath, app.WorkloadsPath, app.ExceptionsPath, app.PreviewNamespacesPath, app.PreviewPoliciesPath}, paths); diff != "" {
		t.Errorf("webhook paths, cmd/webhook (-) and config/webhook (+):\n%s", diff)
	}
}

// The exception editor role joins the built-in edit and admin roles only
// when the value asks for it: by default, writing an exception is a
// permission of its own.
func TestChartExceptionEditorAggregation(t *testing.T) {
	needHelm(t)
	for _, tc := range []struct {
		set  []string
		want bool
	}{{nil, false}, {[]string{"exceptions.editorRole.aggregateToEdit=true"}, true}} {
		var role rbacv1.ClusterRole
		if err := find(mustRenderChart(t, tc.set...), "ClusterRole", exceptionEditorRole, &role); err != nil {
			t.Fatal(err)
		}
		for _, label := range []string{"rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-admin"} {
			if got := role.Labels[label] == "true"; got != tc.want {
				t.Errorf("values %v: label %s set %v, want %v", tc.set, label, got, tc.want)
			}
		}
		if len(role.Rules) == 0 || !slices.Contains(role.Rules[0].Verbs, "create") || !slices.Contains(role.Rules[0].Resources, "slimimageexceptions") {
			t.Errorf("rules %+v, want create on slimimageexceptions", role.Rules)
		}
	}
	if err := find(mustRenderChart(t, "exceptions.editorRole.create=false"), "ClusterRole", exceptionEditorRole, &rbacv1.ClusterRole{}); err == nil {
		t.Error("the editor role is rendered with exceptions.editorRole.create=false")
	}
}
