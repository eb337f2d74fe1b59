package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// The webhook runs as the chart's ServiceAccount, bound only to the
// chart's ClusterRole and Role, and does its whole job: it syncs its
// caches, reports policy status, refuses a Pod, records Events regarding
// the Pod it refused, authenticates to a private registry with the Pod's
// and the service account's pull secrets, and, run again with
// self-managed certificates, issues its certificate and injects its CA. A
// permission missing from the chart fails one of these steps, and any
// "forbidden" the webhook or client-go logged fails the test too.
func TestWebhookRunsUnderChartRBAC(t *testing.T) {
	needHelm(t)
	if s.webhooks == nil {
		t.Fatal("the chart's webhook configuration is not installed")
	}
	ctx := context.Background()

	// The chart's identity and permissions, applied for real.
	objs := mustRenderChart(t)
	var rbac []*unstructured.Unstructured
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
		found := ofKind(objs, kind)
		if len(found) == 0 && kind != "ServiceAccount" {
			t.Fatalf("the chart renders no %s", kind)
		}
		rbac = append(rbac, found...)
	}
	if err := applyForReal(ctx, rbac); err != nil {
		t.Fatal(err)
	}
	asWebhook := rest.CopyConfig(s.cfg)
	asWebhook.Impersonate = rest.ImpersonationConfig{UserName: serviceAccountUser}
	checkImpersonationIsConfined(t, asWebhook)

	reg := devcluster.StartRegistries("puller", "pull-s3cret")
	t.Cleanup(reg.Close)
	if err := reg.PushApps(); err != nil {
		t.Fatal(err)
	}

	// The Report CRD the chart installs, for the background scan.
	if err := applyForReal(ctx, ofKind(objs, "CustomResourceDefinition")); err != nil {
		t.Fatal(err)
	}
	t.Run("admission", func(t *testing.T) {
		startWebhook(t, asWebhook, s.webhooks.LocalServingHost, s.webhooks.LocalServingPort, s.webhooks.LocalServingCertDir,
			func(o *app.Options) { o.ScanInterval, o.ScanDebounce = time.Hour, 100*time.Millisecond })
		admits(t, reg)
	})

	t.Run("self-managed certificates", func(t *testing.T) {
		// cert-controller rewrites the caBundle of the configuration the
		// admission subtest used; put envtest's back afterwards.
		t.Cleanup(func() { restoreCABundle(t) })
		dir := t.TempDir()
		port, err := devcluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		startWebhook(t, asWebhook, "127.0.0.1", port, dir, func(o *app.Options) {
			o.CertRotation, o.Namespace = true, releaseNamespace
		})
		rotates(t, dir)
	})

	if forbidden := forbiddenLines(s.logs.String()); len(forbidden) > 0 {
		t.Errorf("the webhook was refused by the API server:\n%s", strings.Join(forbidden, "\n"))
	}
}

// checkImpersonationIsConfined makes sure the impersonated identity is not
// an administrator: it cannot list Secrets cluster-wide.
func checkImpersonationIsConfined(t *testing.T, cfg *rest.Config) {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: s.scheme})
	if err != nil {
		t.Fatal(err)
	}
	err = c.List(context.Background(), &corev1.SecretList{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets as %s: %v, want forbidden", serviceAccountUser, err)
	}
}

// forbiddenLines returns the log lines that report an authorization
// failure.
func forbiddenLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "is forbidden") || strings.Contains(l, "cannot ") && strings.Contains(l, serviceAccountUser) {
			out = append(out, l)
		}
	}
	return out
}

// startWebhook runs the webhook as cfg's identity, serving on host:port
// with the certificates in certDir and the options changed by opts, for
// the rest of the test, and waits until /readyz says it is ready.
func startWebhook(t *testing.T, cfg *rest.Config, host string, port int, certDir string, opts ...func(*app.Options)) {
	t.Helper()
	o, err := webhooktest.Options(cfg, host, port, certDir)
	if err != nil {
		t.Fatal(err)
	}
	o.Registerer = prometheus.NewRegistry()
	for _, f := range opts {
		f(&o)
	}
	webhook := webhooktest.Start(t, o)
	err = webhooktest.WaitReady(context.Background(), o, webhook)
	switch {
	case errors.Is(err, devcluster.ErrStopped):
		t.Fatalf("the webhook %v", err)
	case err != nil:
		t.Fatalf("the webhook was not ready within %s (%v); its log ends:\n%s", webhooktest.ReadyWithin, err, tail(s.logs.String(), 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// admits judges Pods as the chart's ServiceAccount.
func admits(t *testing.T, reg *devcluster.Registries) {
	ctx := context.Background()
	selector := map[string]string{"deploy.slimgate.dev/rbac": "true"}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac-apps", Labels: selector}}
	mustCreate(t, ns)

	// A policy the webhook must see (list, watch) and report Ready on
	// (status update).
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}, Spec: v1alpha1.SlimImagePolicySpec{
		Mode:              v1alpha1.ModeEnforce,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: selector},
		// The test registries are plain HTTP on loopback.
		Registries: v1alpha1.RegistryRules{AllowPrivateNetworks: true, Insecure: []string{reg.Open, reg.Private}},
	}}
	mustCreate(t, p)
	t.Cleanup(func() { _ = s.admin.Delete(ctx, p) })
	if err := devcluster.WaitPolicyReady(ctx, s.admin, p.Name, controller.ConditionReady, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	sdk := reg.GoSDKApp()
	t.Run("refuses and records an Event", func(t *testing.T) {
		err := s.admin.Create(ctx, podOf(ns.Name, "sdk", sdk))
		mustRefuse(t, err, sdk)
		waitEvent(t, ns.Name, "Pod", "sdk")
	})

	// Pull secrets, from the Pod and from its service account.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "pull"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: reg.DockerConfigJSON()},
	}
	mustCreate(t, secret)
	private := reg.PrivateGoSDKApp()
	t.Run("reads the Pod's pull secret", func(t *testing.T) {
		pod := podOf(ns.Name, "private", private)
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret.Name}}
		mustRefuse(t, s.admin.Create(ctx, pod), private)
	})
	t.Run("reads the service account's pull secret", func(t *testing.T) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "builder"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: secret.Name}}}
		mustCreate(t, sa)
		pod := podOf(ns.Name, "private-sa", private)
		pod.Spec.ServiceAccountName = sa.Name
		mustRefuse(t, s.admin.Create(ctx, pod), private)
	})

	// Events regard the object the requester created: a Pod that names a
	// ReplicaSet or a Job as its controller, created by a person, is
	// judged and recorded as that Pod, and no owner is looked up.
	slim := reg.StaticApp()
	for _, c := range []struct {
		name string
		// owner is named as the Pod's controller; it is of kind in
		// apiVersion and is in turn controlled by workload/workloadName
		// (of the same apiVersion).
		owner                  client.Object
		apiVersion, kind       string
		workload, workloadName string
	}{
		{name: "a Pod naming a ReplicaSet", apiVersion: "apps/v1", kind: "ReplicaSet", workload: "Deployment", workloadName: "web",
			owner: &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web-7c9d"},
				Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
					Template: templateOf("web", slim, corev1.RestartPolicyAlways)}}},
		{name: "a Pod naming a Job", apiVersion: "batch/v1", kind: "Job", workload: "CronJob", workloadName: "nightly",
			owner: &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "nightly-29000000"},
				Spec: batchv1.JobSpec{Template: templateOf("nightly", slim, corev1.RestartPolicyNever)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			controlledBy(c.owner, c.apiVersion, c.workload, c.workloadName)
			mustCreate(t, c.owner)
			pod := podOf(ns.Name, c.owner.GetName()+"-x7k2q", sdk)
			controlledBy(pod, c.apiVersion, c.kind, c.owner.GetName())
			mustRefuse(t, s.admin.Create(ctx, pod), sdk)
			waitEvent(t, ns.Name, "Pod", pod.Name)
		})
	}

	// The background scan reads every workload kind, sets the policy's
	// status.scan and writes the namespace's Report: the ReplicaSet and the
	// Job above, whose owners do not exist, are workloads of their own.
	t.Run("the background scan reports", func(t *testing.T) {
		report := &unstructured.Unstructured{}
		report.SetAPIVersion("openreports.io/v1alpha1")
		report.SetKind("Report")
		var got v1alpha1.SlimImagePolicy
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			if err := s.admin.Get(ctx, client.ObjectKey{Name: p.Name}, &got); err != nil {
				return false, err
			}
			if got.Status.Scan == nil || got.Status.Scan.WorkloadsScanned < 2 {
				return false, nil
			}
			err := s.admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: controller.ReportName(p.Name)}, report)
			return err == nil, client.IgnoreNotFound(err)
		})
		if err != nil {
			t.Fatalf("no scan results (status.scan %+v): %v", got.Status.Scan, err)
		}
		results, _, _ := unstructured.NestedSlice(report.Object, "results")
		if len(results) < 2 {
			t.Errorf("report results = %v, want the ReplicaSet's and the Job's", results)
		}
	})
}

// rotates checks what the webhook did with self-managed certificates.
func rotates(t *testing.T, dir string) {
	ctx := context.Background()
	var secret corev1.Secret
	key := types.NamespacedName{Namespace: releaseNamespace, Name: "slimgate-webhook-tls"}
	if err := s.admin.Get(ctx, key, &secret); err != nil {
		t.Fatal(err)
	}
	ca := secret.Data["ca.crt"]
	if len(ca) == 0 || len(secret.Data[corev1.TLSCertKey]) == 0 {
		t.Fatalf("secret %s holds %d keys, no CA or certificate", key, len(secret.Data))
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := s.admin.Get(ctx, client.ObjectKey{Name: "slimgate"}, &vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			t.Errorf("webhook %s: caBundle is not the generated CA", w.Name)
		}
	}
	crt, err := os.ReadFile(filepath.Join(dir, corev1.TLSCertKey))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(crt, secret.Data[corev1.TLSCertKey]) {
		t.Error("the certificate in the cert dir is not the one in the Secret")
	}
}

// restoreCABundle puts envtest's CA back into the chart's webhooks.
func restoreCABundle(t *testing.T) {
	ctx := context.Background()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := s.admin.Get(ctx, client.ObjectKey{Name: "slimgate"}, &vwc); err != nil {
		t.Error(err)
		return
	}
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.CABundle = s.webhooks.LocalServingCAData
	}
	if err := s.admin.Update(ctx, &vwc); err != nil {
		t.Error(err)
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := s.admin.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// mustRefuse checks err is the webhook's denial of image for a Go SDK it
// found in the image's history: not an inspection failure, which would
// mean the registry was not read.
func mustRefuse(t *testing.T, err error, image string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s admitted, want refused", image)
	}
	msg := err.Error()
	if !apierrors.IsForbidden(err) || !strings.Contains(msg, "denied the request") {
		t.Fatalf("error %v is not a webhook denial", err)
	}
	for _, want := range []string{image, "toolchain.go", "GOLANG_VERSION"} {
		if !strings.Contains(msg, want) {
			t.Errorf("denial does not mention %q:\n%s", want, msg)
		}
	}
}

// waitEvent waits for an ImageRejected Event regarding kind/name.
func waitEvent(t *testing.T, ns, kind, name string) {
	t.Helper()
	eventually(t, 15*time.Second, func() error {
		var list eventsv1.EventList
		if err := s.admin.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.Reason == "ImageRejected" && e.Regarding.Kind == kind && e.Regarding.Name == name && e.ReportingController == "slimgate" {
				return nil
			}
			seen = append(seen, e.Reason+" "+e.Regarding.Kind+"/"+e.Regarding.Name)
		}
		return fmt.Errorf("no ImageRejected event regarding %s/%s; events: %q", kind, name, seen)
	})
}

func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	if err := devcluster.Poll(context.Background(), within, f); err != nil {
		t.Fatal(err)
	}
}

func podOf(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
}

func templateOf(app, image string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{RestartPolicy: restart, Containers: []corev1.Container{{Name: "app", Image: image}}}}
}

// controlledBy makes obj controlled by an owner that need not exist (no
// garbage collector runs here).
func controlledBy(obj metav1.Object, apiVersion, kind, name string) {
	yes := true
	obj.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name,
		UID: types.UID("uid-" + name), Controller: &yes}})
}
