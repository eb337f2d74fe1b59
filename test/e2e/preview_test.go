package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// scanningWebhook replaces the suite's webhook, for the rest of the test,
// with one that runs the background scan (and with it the preview).
func scanningWebhook(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	release := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app.DefaultNamespace}}
	if err := e2e.client.Create(ctx, release); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := e2e.Webhook.Stop(webhooktest.StopWithin); err != nil {
		t.Fatalf("stopping the webhook: %v", err)
	}
	o := e2e.WebhookOptions
	o.ScanInterval, o.ScanDebounce = time.Hour, 200*time.Millisecond
	scanning, err := webhooktest.Run(ctx, o)
	if err != nil {
		t.Fatalf("starting a scanning webhook: %v", err)
	}
	e2e.Webhook = scanning
	t.Cleanup(func() {
		if err := scanning.Stop(webhooktest.StopWithin); err != nil {
			t.Errorf("stopping the scanning webhook: %v", err)
		}
		if e2e.Webhook, err = webhooktest.Run(ctx, e2e.WebhookOptions); err != nil {
			t.Fatalf("restarting the suite's webhook: %v", err)
		}
	})
}

// matchLines checks that got holds exactly one line per want, each
// starting with it.
func matchLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("%s: warnings\n  %q\nwant lines starting with\n  %q", what, got, want)
	}
}

// TestPreviewBeforeEnforcing: the dry-run of the label that opts a
// namespace in, and the dry-run of a policy's switch to Enforce, warn of
// exactly the running workloads Enforce would deny there, from the
// background scan's results.
func TestPreviewBeforeEnforcing(t *testing.T) {
	scanningWebhook(t)
	ctx := context.Background()
	optIn := "e2e.slimgate.dev/preview-" + rand.String(5)
	shop, blog, quiet := namespace(t, caseLabels(t)), namespace(t, caseLabels(t)), namespace(t, caseLabels(t))
	deploy := func(ns, name, image string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod(ns, name, image).Spec}}}
	}
	for _, o := range []client.Object{
		deploy(shop, "api", e2e.reg.GoSDKApp()), deploy(shop, "web", e2e.reg.StaticApp()),
		pod(blog, "front", e2e.reg.GoSDKApp()),
		deploy(quiet, "static", e2e.reg.StaticApp()),
	} {
		if err := e2e.client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	enforce := policy(t, spec(v1alpha1.ModeEnforce, map[string]string{optIn: "true"}))
	audit := policy(t, spec(v1alpha1.ModeAudit, caseLabels(t)))

	// The scanning replica publishes each policy's preview.
	eventually(t, time.Minute, func() error {
		for _, name := range []string{enforce.Name, audit.Name} {
			var p v1alpha1.SlimImagePolicy
			if err := e2e.client.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
				return err
			}
			pv := p.Status.Preview
			if pv == nil {
				return fmt.Errorf("policy %s has no preview yet", name)
			}
			var seen []string
			for _, ns := range pv.Namespaces {
				if slices.Contains([]string{shop, blog, quiet}, ns.Namespace) {
					seen = append(seen, fmt.Sprint(ns.Namespace, "=", ns.Denied))
				}
			}
			want := []string{blog + "=1", shop + "=1"}
			slices.Sort(want)
			if !slices.Equal(seen, want) {
				return fmt.Errorf("policy %s previews %v, want %v", name, seen, want)
			}
		}
		return nil
	})

	// kubectl label ns shop <optIn>=true --dry-run=server
	e2e.warnings.Take()
	label := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"metadata":{"labels":{%q:"true"}}}`, optIn))
	if err := e2e.client.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shop}}, label, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	matchLines(t, "dry-run label of "+shop, e2e.warnings.Take(), []string{
		fmt.Sprintf("slimgate: policy %s (Enforce) would deny 1 running workload in namespace %s:", enforce.Name, shop),
		"  Deployment/api (toolchain.go, ",
	})
	var got corev1.Namespace
	if err := e2e.client.Get(ctx, client.ObjectKey{Name: shop}, &got); err != nil || got.Labels[optIn] != "" {
		t.Errorf("the dry run labelled %s (%v): %v", shop, err, got.Labels)
	}
	// The namespace with nothing to deny gets no warning; the real label
	// change warns as its dry run does.
	if err := e2e.client.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: quiet}}, label); err != nil {
		t.Fatal(err)
	}
	if w := e2e.warnings.Take(); len(w) != 0 {
		t.Errorf("labelling %s, where nothing would be denied, warned %q", quiet, w)
	}
	if err := e2e.client.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: blog}}, label); err != nil {
		t.Fatal(err)
	}
	matchLines(t, "label of "+blog, e2e.warnings.Take(), []string{
		fmt.Sprintf("slimgate: policy %s (Enforce) would deny 1 running workload in namespace %s:", enforce.Name, blog),
		"  Pod/front (toolchain.go, ",
	})

	// kubectl apply of the audit policy switched to Enforce, --dry-run=server,
	// and the creation of a new Enforce policy with the same rules.
	first, second := blog+"/front", shop+"/api"
	if shop < blog {
		first, second = second, first
	}
	want := []string{"slimgate: Enforce would deny 2 running workloads in 2 namespaces:", "  " + first + " (toolchain.go, ", "  " + second + " (toolchain.go, "}
	var current v1alpha1.SlimImagePolicy
	if err := e2e.client.Get(ctx, client.ObjectKeyFromObject(audit), &current); err != nil {
		t.Fatal(err)
	}
	current.Spec.Mode = v1alpha1.ModeEnforce
	if err := e2e.client.Update(ctx, &current, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	matchLines(t, "dry-run switch of "+audit.Name+" to Enforce", e2e.warnings.Take(), want)
	fresh := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6)}, Spec: spec(v1alpha1.ModeEnforce, caseLabels(t))}
	if err := e2e.client.Create(ctx, fresh, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	matchLines(t, "dry-run creation of an Enforce policy with the same rules", e2e.warnings.Take(), want)
}

// TestNoPreviewWithoutScan: with the background scan off (the suite's
// webhook) there is nothing to preview, and the preview webhooks say
// nothing rather than "no scan yet" on every label and policy.
func TestNoPreviewWithoutScan(t *testing.T) {
	ctx := context.Background()
	optIn := "e2e.slimgate.dev/preview-" + rand.String(5)
	ns := namespace(t, caseLabels(t))
	if err := e2e.client.Create(ctx, pod(ns, "front", e2e.reg.GoSDKApp())); err != nil {
		t.Fatal(err)
	}
	policy(t, spec(v1alpha1.ModeEnforce, map[string]string{optIn: "true"}))
	e2e.warnings.Take()
	label := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"metadata":{"labels":{%q:"true"}}}`, optIn))
	if err := e2e.client.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, label, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	fresh := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6)}, Spec: spec(v1alpha1.ModeEnforce, caseLabels(t))}
	if err := e2e.client.Create(ctx, fresh, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if w := e2e.warnings.Take(); len(w) != 0 {
		t.Errorf("with the scan off, a label and a policy warned %q", w)
	}
}
