package deploy

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// With webhook.clientAuth, the file that --client-ca-name names inside
// --cert-dir is the CA key of the Secret or ConfigMap the values name, in
// both certificate modes (the serving certificate still in place), and the
// API server accepts the Deployment under the restricted Pod Security
// level without warnings; helm lint passes. Off (the default), no flag
// and no extra volume.
func TestChartClientAuth(t *testing.T) {
	needHelm(t)
	for _, tc := range []struct {
		name string
		set  []string
		// caSource is what the container reads at --client-ca-name ("":
		// no flag, no extra volume); servingSource, at tls.crt.
		caSource, servingSource string
	}{
		{name: "off by default", servingSource: "emptyDir"},
		{name: "self-managed certificates, CA in a ConfigMap",
			set:      []string{"webhook.clientAuth.enabled=true", "webhook.clientAuth.caConfigMap=callers-ca", "webhook.clientAuth.caKey=root.pem"},
			caSource: "ConfigMap/callers-ca:root.pem", servingSource: "emptyDir"},
		{name: "cert-manager, CA in a Secret",
			set:      []string{"certManager.enabled=true", "webhook.clientAuth.enabled=true", "webhook.clientAuth.caSecret=callers-ca"},
			caSource: "Secret/callers-ca:ca.crt", servingSource: "Secret/slimgate-webhook-tls:tls.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := helmLint(tc.set...); err != nil {
				t.Fatal(err)
			}
			objs := mustRenderChart(t, tc.set...)
			var d appsv1.Deployment
			if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
				t.Fatal(err)
			}
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			certDir, caName := flagValue(c.Args, "--cert-dir"), flagValue(c.Args, "--client-ca-name")
			if got := mountedFile(pod, c, path.Join(certDir, "tls.crt")); got != tc.servingSource {
				t.Errorf("tls.crt comes from %q, want %q", got, tc.servingSource)
			}
			switch {
			case tc.caSource == "" && (caName != "" || len(pod.Volumes) != 1):
				t.Errorf("client certificates required by default: --client-ca-name=%q, volumes %+v", caName, pod.Volumes)
			case tc.caSource != "" && caName == "":
				t.Errorf("args %q lack --client-ca-name", c.Args)
			case tc.caSource != "":
				if got := mountedFile(pod, c, path.Join(certDir, caName)); got != tc.caSource {
					t.Errorf("--client-ca-name=%s reads %q, want %q", caName, got, tc.caSource)
				}
			}
			if w := dryRunWarnings(t, ofKind(objs, "Deployment")); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
		})
	}
}

func TestChartClientAuthRefusesBadValues(t *testing.T) {
	needHelm(t)
	const want = "webhook.clientAuth: set one of caSecret and caConfigMap"
	for _, set := range [][]string{
		{"webhook.clientAuth.enabled=true"},
		{"webhook.clientAuth.enabled=true", "webhook.clientAuth.caSecret=a", "webhook.clientAuth.caConfigMap=b"},
	} {
		if _, err := helmTemplate(set...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("helm template %v: error %v, want one saying %q", set, err, want)
		}
	}
	if _, err := helmTemplate("webhook.clientAuth.enabled=true", "webhook.clientAuth.caSecret=a", "webhook.clientAuth.caKey="); err == nil ||
		!strings.Contains(err.Error(), "webhook.clientAuth.caKey is required") {
		t.Errorf("empty caKey: error %v", err)
	}
}

// The NetworkPolicy never cuts off the API server by default: turned on
// with its default values, the webhook port admits every source (the API
// server's calls come from node addresses, control-plane subnets or
// konnectivity agents depending on the distribution). Only peers the user
// lists narrow it, and then exactly to them.
func TestChartNetworkPolicyKeepsTheAPIServerIn(t *testing.T) {
	needHelm(t)
	ipBlock := networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.10/32"}}
	for _, tc := range []struct {
		name string
		set  []string
		want []networkingv1.NetworkPolicyPeer // nil: every source
	}{
		{name: "defaults", set: []string{"networkPolicy.enabled=true"}},
		{name: "metrics peers do not narrow the webhook port",
			set: []string{"networkPolicy.enabled=true", "networkPolicy.metricsFrom[0].ipBlock.cidr=10.9.0.0/16"}},
		{name: "control-plane address listed",
			set:  []string{"networkPolicy.enabled=true", "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.10/32"},
			want: []networkingv1.NetworkPolicyPeer{ipBlock}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustRenderChart(t, tc.set...)
			var np networkingv1.NetworkPolicy
			if err := find(objs, "NetworkPolicy", "slimgate-webhook", &np); err != nil {
				t.Fatal(err)
			}
			webhookPort := intstr.FromString("webhook")
			var rules []networkingv1.NetworkPolicyIngressRule
			for _, r := range np.Spec.Ingress {
				if len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool {
					return p.Port != nil && *p.Port == webhookPort
				}) {
					rules = append(rules, r)
				}
			}
			if len(rules) != 1 {
				t.Fatalf("%d ingress rules cover the webhook port, want 1: %+v", len(rules), np.Spec.Ingress)
			}
			if diff := cmp.Diff(tc.want, rules[0].From); diff != "" {
				t.Errorf("sources admitted to the webhook port (-want +got; nil: every source):\n%s", diff)
			}
		})
	}
}

// flagValue returns the value of --name=value in args, "" when absent.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// mountedFile says what the container c reads at file: "Kind/name:key" of
// the Secret or ConfigMap key projected there, "emptyDir" for a file in an
// emptyDir, "" when nothing provides it. It follows the deepest volume
// mount containing file, then the volume's items.
func mountedFile(pod corev1.PodSpec, c corev1.Container, file string) string {
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") && (mount == nil || len(m.MountPath) > len(mount.MountPath)) {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		return ""
	}
	rel := strings.TrimPrefix(file, strings.TrimSuffix(mount.MountPath, "/")+"/")
	i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name })
	if i < 0 {
		return ""
	}
	v := pod.Volumes[i].VolumeSource
	if v.EmptyDir != nil {
		return "emptyDir"
	}
	// keyAt returns the key of items projected at rel; with no items,
	// every key is a file of its own name.
	keyAt := func(items []corev1.KeyToPath) string {
		if len(items) == 0 {
			return rel
		}
		for _, it := range items {
			if it.Path == rel {
				return it.Key
			}
		}
		return ""
	}
	type source struct {
		kind, name string
		items      []corev1.KeyToPath
	}
	var sources []source
	switch {
	case v.Secret != nil:
		sources = append(sources, source{"Secret", v.Secret.SecretName, v.Secret.Items})
	case v.ConfigMap != nil:
		sources = append(sources, source{"ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items})
	case v.Projected != nil:
		for _, p := range v.Projected.Sources {
			switch {
			case p.Secret != nil:
				sources = append(sources, source{"Secret", p.Secret.Name, p.Secret.Items})
			case p.ConfigMap != nil:
				sources = append(sources, source{"ConfigMap", p.ConfigMap.Name, p.ConfigMap.Items})
			}
		}
	}
	// A source without items projects every key; the CA is never taken
	// from such a source, so prefer the one that names the file.
	found := ""
	for _, s := range sources {
		key := keyAt(s.items)
		if key == "" {
			continue
		}
		got := s.kind + "/" + s.name + ":" + key
		if len(s.items) > 0 {
			return got
		}
		if found == "" {
			found = got
		}
	}
	return found
}
