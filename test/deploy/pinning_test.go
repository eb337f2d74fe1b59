package deploy

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/cmd/webhook/app"
)

// pinningManifest is config/webhook/pinning's MutatingWebhookConfiguration.
func pinningManifest(t *testing.T) admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(configDir, "webhook", "pinning", "mutating.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &mwc); err != nil {
		t.Fatal(err)
	}
	return mwc
}

// webhookArgs returns the webhook container's arguments.
func webhookArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var d appsv1.Deployment
	if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Args
}

// webhookFlags reads args with the webhook's own flags, so that a test
// sees the options the webhook would run with, and fails when the
// webhook would refuse them.
func webhookFlags(t *testing.T, args []string) app.Options {
	t.Helper()
	var o app.Options
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("the webhook refuses the chart's args %q: %v", args, err)
	}
	return o
}

// checkNoPinning fails the test when objs, rendered as what says, pin
// digests: a MutatingWebhookConfiguration, or the webhook started with
// --pin-digests.
func checkNoPinning(t *testing.T, what string, objs []*unstructured.Unstructured) {
	t.Helper()
	if got := ofKind(objs, "MutatingWebhookConfiguration"); len(got) != 0 {
		t.Errorf("%s renders %v", what, names(got))
	}
	if args := webhookArgs(t, objs); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--pin-digests") }) {
		t.Errorf("%s: args %q", what, args)
	}
}

// mutatingRBAC returns the ClusterRole's rules on
// mutatingwebhookconfigurations.
func mutatingRBAC(t *testing.T, objs []*unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole
	if err := find(objs, "ClusterRole", "slimgate", &role); err != nil {
		t.Fatal(err)
	}
	var out []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") {
			out = append(out, r)
		}
	}
	return out
}

// The MutatingWebhookConfiguration of digest pinning, a flag on the
// webhook and the RBAC that injects its CA come with webhook.pinDigests
// only. Its webhook is config/webhook/pinning's, on the webhook's PinPath,
// and shares the validating webhooks' timeout, failure policy and
// namespaces, whatever the values set them to.
func TestChartPinDigests(t *testing.T) {
	needHelm(t)
	off := mustRenderChart(t)
	checkNoPinning(t, "pinDigests off", off)
	if got := mutatingRBAC(t, off); len(got) != 0 {
		t.Errorf("pinDigests off grants %v", got)
	}

	want := pinningManifest(t)
	for _, c := range []struct {
		name        string
		set         []string
		certManager bool
	}{
		{name: "self-managed certificates", set: []string{"webhook.pinDigests=true"}},
		{name: "cert-manager", set: []string{"webhook.pinDigests=true", "certManager.enabled=true"}, certManager: true},
		{name: "values follow", set: []string{"webhook.pinDigests=true", "webhook.failurePolicy=Fail", "webhook.timeoutSeconds=5",
			"webhook.namespaceSelector.matchLabels.team=a"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRenderChart(t, c.set...)
			var got admissionregistrationv1.MutatingWebhookConfiguration
			if err := find(objs, "MutatingWebhookConfiguration", want.Name, &got); err != nil {
				t.Fatal(err)
			}
			var vwc admissionregistrationv1.ValidatingWebhookConfiguration
			if err := find(objs, "ValidatingWebhookConfiguration", want.Name, &vwc); err != nil {
				t.Fatal(err)
			}
			// What the values govern follows the validating webhooks;
			// the rest is config/webhook/pinning's.
			expect := *want.Webhooks[0].DeepCopy()
			v := vwc.Webhooks[0]
			expect.TimeoutSeconds, expect.FailurePolicy, expect.NamespaceSelector = v.TimeoutSeconds, v.FailurePolicy, v.NamespaceSelector
			if len(got.Webhooks) != 1 {
				t.Fatalf("%d webhooks, want 1", len(got.Webhooks))
			}
			if diff := cmp.Diff(expect, got.Webhooks[0]); diff != "" {
				t.Errorf("webhook, config/webhook/pinning with the values applied (-) and the chart (+):\n%s", diff)
			}
			w := got.Webhooks[0]
			if *w.ClientConfig.Service.Path != app.PinPath || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
				*w.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
				t.Errorf("path %s, sideEffects %s, reinvocationPolicy %s", *w.ClientConfig.Service.Path, *w.SideEffects, *w.ReinvocationPolicy)
			}
			checkExcluded(t, w.Name, w.NamespaceSelector)
			if args := webhookArgs(t, objs); !slices.Contains(args, "--pin-digests=true") {
				t.Errorf("args %q lack --pin-digests=true", args)
			}
			inject := got.Annotations["cert-manager.io/inject-ca-from"]
			rules := mutatingRBAC(t, objs)
			if c.certManager {
				if inject != releaseNamespace+"/slimgate-serving-cert" || len(rules) != 0 {
					t.Errorf("cert-manager: inject-ca-from %q, rules %v; want the Certificate and no rules", inject, rules)
				}
			} else if inject != "" || len(rules) != 2 {
				t.Errorf("self-managed: inject-ca-from %q, rules %v; want none and 2", inject, rules)
			}

			if w := dryRunWarnings(t, objs); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
			if err := helmLint(c.set...); err != nil {
				t.Error(err)
			}
		})
	}

	if _, err := helmTemplate("webhook.pinDigests=yes"); err == nil || !strings.Contains(err.Error(), "at '/webhook/pinDigests': got string, want boolean") {
		t.Errorf("pinDigests=yes: %v, want the schema's refusal", err)
	}
}

// config/default with the pinning component enabled, as its comment says
// (uncommenting two lines), adds the MutatingWebhookConfiguration with the
// CA injected by cert-manager and the release namespace excluded, in
// whatever namespace config/default installs to, and starts the webhook
// with --pin-digests; without it there is neither.
func TestKustomizePinningComponent(t *testing.T) {
	needKustomize(t)
	checkNoPinning(t, "config/default", renderDefault(t))

	for _, ns := range []string{releaseNamespace, "gate"} {
		t.Run(ns, func(t *testing.T) {
			objs := renderWithPinning(t, ns)
			var got admissionregistrationv1.MutatingWebhookConfiguration
			want := pinningManifest(t)
			if err := find(objs, "MutatingWebhookConfiguration", want.Name, &got); err != nil {
				t.Fatal(err)
			}
			if inject := got.Annotations["cert-manager.io/inject-ca-from"]; inject != ns+"/slimgate-serving-cert" {
				t.Errorf("inject-ca-from %q", inject)
			}
			if len(got.Webhooks) != 1 {
				t.Fatalf("%d webhooks", len(got.Webhooks))
			}
			w := got.Webhooks[0]
			if w.ClientConfig.Service == nil || w.ClientConfig.Service.Namespace != ns {
				t.Errorf("clientConfig %+v, want the Service in %s", w.ClientConfig, ns)
			}
			if ns == releaseNamespace {
				if diff := cmp.Diff(want.Webhooks, got.Webhooks); diff != "" {
					t.Errorf("webhooks, mutating.yaml (-) and rendered (+):\n%s", diff)
				}
			}
			sel := w.NamespaceSelector.MatchExpressions[0]
			if sel.Key != "kubernetes.io/metadata.name" || sel.Operator != "NotIn" || !slices.Contains(sel.Values, ns) {
				t.Errorf("namespaceSelector %+v does not exclude %s", w.NamespaceSelector, ns)
			}
			if args := webhookArgs(t, objs); !slices.Contains(args, "--pin-digests=true") {
				t.Errorf("args %q lack --pin-digests=true", args)
			}
		})
	}
}

// renderWithPinning builds a copy of config/ whose default kustomization
// has the pinning component's lines uncommented and installs to ns.
func renderWithPinning(t *testing.T, ns string) []*unstructured.Unstructured {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "config")
	if err := os.CopyFS(dir, os.DirFS(configDir)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "default", "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for old, repl := range map[string]string{
		"\n# components:\n# - ../webhook/pinning\n": "\ncomponents:\n- ../webhook/pinning\n",
		"\nnamespace: " + releaseNamespace + "\n":   "\nnamespace: " + ns + "\n",
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("config/default/kustomization.yaml lacks %q", old)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := kustomizeBuild(filepath.Join(dir, "default"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
