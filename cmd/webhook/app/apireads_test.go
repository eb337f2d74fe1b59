package app_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// A review reads nothing from the API server once the webhook is warm:
// policies, namespaces and service accounts come from informer caches and
// the owner named by a Pod is not looked up. Only the pull secrets a Pod
// and its service account name are read, one GET each per review: they
// are never cached.
func TestReviewsReadOnlyPullSecretsFromTheAPIServer(t *testing.T) {
	needAPIServer(t)
	ctx := context.Background()
	reg := devcluster.StartRegistries("puller", "pull-s3cret")
	t.Cleanup(reg.Close)
	if err := reg.PushApps(); err != nil {
		t.Fatal(err)
	}

	labels := map[string]string{"apireads.slimgate.dev/case": rand.String(6)}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "reads-" + rand.String(5), Labels: labels}}
	pull := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "pull"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: reg.DockerConfigJSON()}}
	saPull := pull.DeepCopy()
	saPull.Name = "sa-pull"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "builder"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: saPull.Name}}}
	// The account a Pod naming none runs as, as kube-controller-manager
	// creates it in every namespace.
	plain := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "reads-" + rand.String(5)}, Spec: v1alpha1.SlimImagePolicySpec{
		Mode: v1alpha1.ModeAudit, NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels},
		Registries: v1alpha1.RegistryRules{AllowPrivateNetworks: true, Insecure: []string{reg.Open, reg.Private}},
	}}
	createAll(t, ns, pull, saPull, sa, plain, p)

	counter := &devcluster.Requests{}
	o := options(t)
	o.Config = rest.CopyConfig(restConfig)
	o.Config.Wrap(counter.Wrap)
	o.Registerer = prometheus.NewRegistry()
	writeSelfSigned(t, o.CertDir)
	waitReady(t, o, webhooktest.Start(t, o))
	if err := devcluster.WaitPolicyReady(ctx, kube, p.Name, controller.ConditionReady, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	hc := tlsClient(t, filepath.Join(o.CertDir, "tls.crt"))
	url := "https://" + net.JoinHostPort(o.Host, fmt.Sprint(o.Port)) + app.PodsPath + "?timeout=10s"
	review := func(i int, secrets bool) {
		t.Helper()
		pod := &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprint("web-5d4f8-", i), GenerateName: "web-5d4f8-",
				UID: types.UID(fmt.Sprint("pod-uid-", i)), OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1",
					Kind: "ReplicaSet", Name: "web-5d4f8", UID: "rs-uid", Controller: new(true)}}},
			Spec: corev1.PodSpec{ServiceAccountName: sa.Name, ImagePullSecrets: []corev1.LocalObjectReference{{Name: pull.Name}},
				Containers: []corev1.Container{{Name: "app", Image: reg.PrivateGoSDKApp()}}},
		}
		if !secrets {
			pod.Spec.ServiceAccountName, pod.Spec.ImagePullSecrets = "", nil
			pod.Spec.Containers[0].Image = reg.GoSDKApp()
		}
		r := postReview(hc, url, webhooktest.PodReview(t, types.UID(rand.String(12)), pod))
		if r.err != nil || r.review.Response == nil || !r.review.Response.Allowed {
			t.Fatalf("review %d: %v %+v", i, r.err, r.review.Response)
		}
		if len(r.review.Response.Warnings) != 0 {
			t.Fatalf("review %d warned %q", i, r.review.Response.Warnings)
		}
	}
	review(0, true) // warm-up: registries, tokens, caches
	review(0, false)
	counter.Take()
	const reviews = 20
	for i := 1; i <= reviews; i++ {
		review(i, true)
	}
	counts := counter.Take()
	var lines []string
	reads, secretReads := 0, 0
	for req, n := range counts {
		lines = append(lines, fmt.Sprintf("%4d %s", n, req))
		if !strings.HasPrefix(req, "GET ") {
			continue
		}
		reads += n
		if strings.Contains(req, "/secrets/") {
			secretReads += n
			continue
		}
		t.Errorf("%d reads of %s in %d reviews, want none", n, strings.TrimPrefix(req, "GET "), reviews)
	}
	sort.Strings(lines)
	t.Logf("API requests during %d warm reviews (%.1f reads per review):\n%s", reviews, float64(reads)/reviews, strings.Join(lines, "\n"))
	// The Pod's secret and its service account's: one GET each per review.
	if secretReads != 2*reviews {
		t.Errorf("%d secret reads in %d reviews, want %d (each review reads its two pull secrets once)", secretReads, reviews, 2*reviews)
	}

	// A Pod and service account naming no pull secret: no read at all.
	for i := 1; i <= reviews; i++ {
		review(reviews+i, false)
	}
	for req, n := range counter.Take() {
		if strings.HasPrefix(req, "GET ") {
			t.Errorf("%d reads of %s in %d reviews without pull secrets, want none", n, strings.TrimPrefix(req, "GET "), reviews)
		}
	}
}
