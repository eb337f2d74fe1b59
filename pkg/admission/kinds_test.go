package admission

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// The table judges exactly the resources (and subresources) the
// ValidatingWebhookConfiguration of config/webhook sends to slimgate's
// judging webhooks (not the preview ones): a
// kind added to one and not the other fails here.
func TestJudgedKindsMatchWebhookConfiguration(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &vwc); err != nil {
		t.Fatal(err)
	}
	var registered []string
	for _, w := range vwc.Webhooks {
		if w.Name == "exceptions.slimgate.dev" || strings.HasPrefix(w.Name, "preview-") {
			continue // they validate SlimImageExceptions or warn on namespaces and policies: no workload is judged
		}
		for _, r := range w.Rules {
			for _, g := range r.APIGroups {
				for _, v := range r.APIVersions {
					for _, res := range r.Resources {
						registered = append(registered, schema.GroupVersion{Group: g, Version: v}.String()+" "+res)
					}
				}
			}
		}
	}
	var judged []string
	for _, k := range judgedKinds {
		gv := k.gvk.GroupVersion().String()
		judged = append(judged, gv+" "+k.resource)
		for _, sub := range k.subresources {
			judged = append(judged, gv+" "+k.resource+"/"+sub)
		}
	}
	slices.Sort(registered)
	slices.Sort(judged)
	if len(registered) == 0 {
		t.Fatal("config/webhook registers no resources")
	}
	if diff := cmp.Diff(registered, judged); diff != "" {
		t.Errorf("config/webhook registers (-) what the table of judged kinds lacks, or the table has (+) what it does not register:\n%s", diff)
	}
}

// Every kind of the table is decoded by the scheme to the table's own
// type, its path names where the Pod spec sits in the object's JSON, and
// the full and the slim decode find the same images there.
func TestJudgedKindsDecode(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range judgedKinds {
		t.Run(k.gvk.Kind, func(t *testing.T) {
			if !supported(k.gvk.GroupKind()) {
				t.Errorf("supported(%s) is false", k.gvk.GroupKind())
			}
			obj := k.newObject()
			obj.SetName("x")
			spec := podSpec()
			*k.podSpec(obj, true) = spec
			b := raw(t, obj, k.gvk.GroupVersion().String(), k.gvk.Kind)
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			at := doc
			for _, field := range strings.Split(k.path, ".") {
				next, ok := at[field].(map[string]any)
				if !ok {
					t.Fatalf("path %s: no object %q in %s", k.path, field, b)
				}
				at = next
			}
			if _, ok := at["containers"]; !ok {
				t.Errorf("path %s holds no containers: %v", k.path, at)
			}
			want := Images(&spec, k.path)
			full, err := d.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			slim, err := d.DecodeAs(b, k.gvk)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range map[string]*Workload{"Decode": full, "DecodeAs": slim} {
				if reflect.TypeOf(w.Object) != reflect.TypeOf(obj) || w.Kind != k.gvk || w.Path != k.path {
					t.Errorf("%s: a %T of kind %s at %s, want a %T of kind %s at %s", name, w.Object, w.Kind, w.Path, obj, k.gvk, k.path)
				}
				if diff := cmp.Diff(want, Images(w.Spec, w.Path)); diff != "" {
					t.Errorf("%s: images (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

// Kinds outside the table are not judged, whatever their group.
func TestUnjudgedKinds(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, gvk := range []schema.GroupVersionKind{
		corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		corev1.SchemeGroupVersion.WithKind("PodTemplate"),
		appsv1.SchemeGroupVersion.WithKind("ControllerRevision"),
	} {
		if supported(gvk.GroupKind()) {
			t.Errorf("supported(%s) is true", gvk.GroupKind())
		}
		raw := []byte(`{"apiVersion":"` + gvk.GroupVersion().String() + `","kind":"` + gvk.Kind + `","metadata":{"name":"x"}}`)
		if _, err := d.DecodeAs(raw, gvk); !errors.Is(err, errUnsupportedKind) {
			t.Errorf("DecodeAs of a %s: %v, want errUnsupportedKind", gvk.Kind, err)
		}
	}
}
