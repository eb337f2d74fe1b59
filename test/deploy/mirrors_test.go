package deploy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"slimgate.dev/slimgate/pkg/mirrors"
)

// mirrorValues set Docker Hub's mirror, with no fallback.
var mirrorValues = []string{
	`registryMirrors.docker\.io.endpoints[0]=https://mirror.example:5000`,
	`registryMirrors.docker\.io.endpoints[1]=http://10.0.0.5:5000/v2/hub`,
	`registryMirrors.docker\.io.fallback=false`,
}

// TestChartRegistryMirrors: the registryMirrors value reaches the webhook
// as the file its --registry-mirrors flag reads, in the form package
// mirrors parses; a change of the value rolls the Pods (they read the
// file at start); without the value there is neither flag nor ConfigMap.
func TestChartRegistryMirrors(t *testing.T) {
	needHelm(t)
	if err := helmLint(mirrorValues...); err != nil {
		t.Fatal(err)
	}
	objs := mustRenderChart(t, mirrorValues...)
	var d appsv1.Deployment
	if err := find(objs, "Deployment", "slimgate-webhook", &d); err != nil {
		t.Fatal(err)
	}
	pod, c := d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0]
	o := webhookFlags(t, c.Args)
	if got := mountedFile(pod, c, o.RegistryMirrors); got != "ConfigMap/slimgate-registry-mirrors:mirrors.yaml" {
		t.Fatalf("--registry-mirrors=%q reads %q", o.RegistryMirrors, got)
	}
	var cm corev1.ConfigMap
	if err := find(objs, "ConfigMap", "slimgate-registry-mirrors", &cm); err != nil {
		t.Fatal(err)
	}
	table, err := mirrors.Parse([]byte(cm.Data["mirrors.yaml"]))
	if err != nil {
		t.Fatalf("the rendered mirrors do not parse: %v\n%s", err, cm.Data["mirrors.yaml"])
	}
	got, _ := table.For("index.docker.io")
	want := mirrors.Mirror{Endpoints: []mirrors.Endpoint{
		{Scheme: "https", Host: "mirror.example:5000", Resolve: true},
		{Scheme: "http", Host: "10.0.0.5:5000", Prefix: "hub", Resolve: true},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docker.io's mirror (-want +got):\n%s", diff)
	}
	if w := dryRunWarnings(t, ofKind(objs, "Deployment")); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}

	checksum := d.Spec.Template.Annotations["checksum/registry-mirrors"]
	var changed appsv1.Deployment
	if err := find(mustRenderChart(t, append(mirrorValues, `registryMirrors.docker\.io.fallback=true`)...), "Deployment", "slimgate-webhook", &changed); err != nil {
		t.Fatal(err)
	}
	if other := changed.Spec.Template.Annotations["checksum/registry-mirrors"]; checksum == "" || other == checksum {
		t.Errorf("checksums %q and %q: a change of the mirrors would not roll the Pods", checksum, other)
	}

	plain := mustRenderChart(t)
	if err := find(plain, "Deployment", "slimgate-webhook", &d); err != nil {
		t.Fatal(err)
	}
	if v := flagValue(d.Spec.Template.Spec.Containers[0].Args, "--registry-mirrors"); v != "" || len(ofKind(plain, "ConfigMap")) != 0 {
		t.Errorf("without mirrors: --registry-mirrors=%q, %d ConfigMaps", v, len(ofKind(plain, "ConfigMap")))
	}
}

func TestChartRegistryMirrorsRefusesBadValues(t *testing.T) {
	needHelm(t)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{`registryMirrors.docker\.io.endpoints[0]=mirror.example`}, "does not match pattern"},
		{[]string{`registryMirrors.docker\.io.endpoints[0]=https://mirror.example/cache`}, "does not match pattern"},
		{[]string{`registryMirrors.docker\.io.fallback=false`}, "missing property 'endpoints'"},
		{[]string{`registryMirrors.docker\.io.endpoints[0]=https://m`, `registryMirrors.docker\.io.fallbak=false`}, "additional properties 'fallbak' not allowed"},
	} {
		t.Run(strings.Join(c.set, ","), func(t *testing.T) {
			_, err := helmTemplate(c.set...)
			if err == nil || !strings.Contains(err.Error(), schemaRefusal) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template %v: error %v, want the schema's refusal saying %q", c.set, err, c.want)
			}
		})
	}
}
