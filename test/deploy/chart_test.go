package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
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
		"podDisruptionBudget.minAvailable=null", "podDisruptionBudget.maxUnavailable=1",
		"webhook.pullSecretAuth=false", "webhook.failurePolicy=Fail", "webhook.namespaceSelector.matchLabels.team=a",
		"policy.mode=Warn", "policy.scope=opt-in"},
		mode: v1alpha1.ModeWarn, optIn: true, failurePolicy: admissionregistrationv1.Fail, certManager: true,
		extra: []string{"Certificate/slimgate-serving-cert", "NetworkPolicy/slimgate-webhook", "ServiceMonitor/slimgate"}},
}

// objectsOf lists the objects a variant renders, as Kind/name, sorted.
func (v variant) objectsOf() []string {
	out := []string{
		"ClusterRole/slimgate", "ClusterRoleBinding/slimgate", "Deployment/slimgate-webhook",
		"PodDisruptionBudget/slimgate-webhook", "Service/slimgate-metrics", "Service/slimgate-webhook",
		"ServiceAccount/slimgate", "SlimImagePolicy/default", "ValidatingWebhookConfiguration/slimgate",
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
			args := []string{"lint", "--strict", chartDir, "--namespace", releaseNamespace, "--kube-version", s.kubeVersion}
			for _, kv := range v.set {
				args = append(args, "--set", kv)
			}
			if _, err := run(s.helm, args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Values the chart refuses with a message, rather than rendering objects
// the API server or the webhook would reject later.
func TestChartRefusesBadValues(t *testing.T) {
	needHelm(t)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"policy.scope=everywhere"}, "policy.scope must be cluster or opt-in"},
		{[]string{"policy.mode=Block"}, "policy.mode must be Enforce, Warn or Audit"},
		{[]string{"webhook.failurePolicy=Maybe"}, "webhook.failurePolicy must be Ignore or Fail"},
		{[]string{"webhook.timeoutSeconds=31"}, "webhook.timeoutSeconds must be between 1 and 30"},
		{[]string{"podDisruptionBudget.maxUnavailable=1"}, "set minAvailable or maxUnavailable, not both"},
	} {
		t.Run(c.set[0], func(t *testing.T) {
			_, err := helmTemplate(c.set...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template %v: error %v, want one saying %q", c.set, err, c.want)
			}
		})
	}
}

func TestHelmTemplate(t *testing.T) {
	needHelm(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs, err := renderChart(v.set...)
			if err != nil {
				t.Fatal(err)
			}
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
		if w.FailurePolicy == nil || *w.FailurePolicy != v.failurePolicy {
			t.Errorf("webhook %s failurePolicy %v, want %s", w.Name, w.FailurePolicy, v.failurePolicy)
		}
		if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
			t.Errorf("webhook %s sideEffects %v", w.Name, w.SideEffects)
		}
		if w.TimeoutSeconds == nil || *w.TimeoutSeconds != 10 {
			t.Errorf("webhook %s timeoutSeconds %v, want 10", w.Name, w.TimeoutSeconds)
		}
		checkExcluded(t, w.Name, w.NamespaceSelector)
	}
	want := map[string]string{
		"pods.slimgate.dev":      "slimgate-webhook." + releaseNamespace + "/validate-pods",
		"workloads.slimgate.dev": "slimgate-webhook." + releaseNamespace + "/validate-workloads",
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
	want := []string{"--cert-dir=/certs", fmt.Sprintf("--pull-secret-auth=%t", v.pullSecrets), "--webhook-port=9443"}
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
		{"admissionregistration.k8s.io/validatingwebhookconfigurations/patch/slimgate", !v.certManager},
		{"events.k8s.io/events/create/*", true},
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
	want, err := os.ReadFile(generatedCRD)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chartCRD)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Fatalf("%s differs from %s: copy it after make manifests\n%s", chartCRD, generatedCRD, cmp.Diff(string(want), string(got)))
	}
}

// The chart's hand-written RBAC grants exactly what the +kubebuilder:rbac
// markers of the code ask for (config/rbac/role.yaml, generated), with
// pull-secret auth and self-managed certificates on.
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
	chart, err := renderChart()
	if err != nil {
		t.Fatal(err)
	}
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
	ctx := context.Background()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			// With the CRD copy in crds/, which helm installs first.
			objs, err := renderChart(append([]string{includeCRDs}, v.set...)...)
			if err != nil {
				t.Fatal(err)
			}
			if len(ofKind(objs, "CustomResourceDefinition")) != 1 {
				t.Fatalf("objects %v lack the CRD", names(objs))
			}
			s.warnings.Take()
			if err := applyDryRun(ctx, objs); err != nil {
				t.Fatal(err)
			}
			if w := s.warnings.Take(); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
		})
	}

	// The check above can fail: a Deployment whose container may escalate
	// its privileges draws a Pod Security warning.
	t.Run("pod security is enforced", func(t *testing.T) {
		objs, err := renderChart("securityContext.allowPrivilegeEscalation=true")
		if err != nil {
			t.Fatal(err)
		}
		s.warnings.Take()
		if err := applyDryRun(ctx, ofKind(objs, "Deployment")); err != nil {
			t.Fatal(err)
		}
		w := s.warnings.Take()
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
	objs, err := renderChart("policy.toolchains=null", "policy.sizeBudget=null", "policy.exclude=null",
		"policy.registries.allow=null", "policy.onInspectionError=Deny")
	if err != nil {
		t.Fatal(err)
	}
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
