package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// crdFile is the generated CRD (make manifests), whose OpenAPI schema the
// API server enforces on SlimImagePolicy objects.
var crdFile = filepath.Join("..", "..", "config", "crd", "bases", "slimgate.dev_slimimagepolicies.yaml")

// TestLimitsMatchCRD ties the limits Validate enforces (for `slimgate
// check --policy`, which never meets the API server) to the maxItems and
// maxLength of the CRD's schema: every limit under spec in the CRD must be
// one of these constants, and every constant must be in the CRD. Changing
// either side alone fails here.
func TestLimitsMatchCRD(t *testing.T) {
	want := map[string]int64{
		"spec.toolchains.deny maxItems":         maxRuleRefs,
		"spec.toolchains.deny[] maxLength":      maxRuleRefLen,
		"spec.toolchains.allow maxItems":        maxRuleRefs,
		"spec.toolchains.allow[] maxLength":     maxRuleRefLen,
		"spec.exclude.images maxItems":          maxExcludeImages,
		"spec.exclude.images[] maxLength":       maxImagePattern,
		"spec.registries.allow maxItems":        maxRegistries,
		"spec.registries.allow[] maxLength":     maxHostLen,
		"spec.registries.insecure maxItems":     maxInsecure,
		"spec.registries.insecure[] maxLength":  maxHostLen,
		"spec.platforms maxItems":               maxPlatforms,
		"spec.exceptions.maxDuration maxLength": maxDurationLen,
	}
	for k, v := range customLimits {
		want["spec.toolchains."+k] = int64(v)
	}
	got := crdLimits(t, crdFile)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("limits in pkg/policy/load.go (-) and in %s (+) differ: change both (the CRD through the +kubebuilder:validation markers and make manifests):\n%s", crdFile, diff)
	}
}

// TestCRDLimitsReader checks crdLimits on a schema of known shape, so that
// TestLimitsMatchCRD cannot pass by finding nothing.
func TestCRDLimitsReader(t *testing.T) {
	doc := `
spec:
  versions:
  - name: v1alpha1
    schema:
      openAPIV3Schema:
        properties:
          spec:
            properties:
              names:
                maxItems: 3
                items:
                  maxLength: 7
                  type: string
              nested:
                properties:
                  deep:
                    maxLength: 9
          status:
            properties:
              note:
                maxLength: 100
`
	path := filepath.Join(t.TempDir(), "crd.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"spec.names maxItems": 3, "spec.names[] maxLength": 7, "spec.nested.deep maxLength": 9}
	if diff := cmp.Diff(want, crdLimits(t, path)); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
}

// crdLimits reads the maxItems and maxLength found under spec in the
// schema of the CRD's only version, keyed "path keyword"; array items are
// "path[]".
func crdLimits(t *testing.T, file string) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(crd.Spec.Versions) != 1 {
		t.Fatalf("%s has %d versions, want 1 (extend this test for more)", file, len(crd.Spec.Versions))
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	props, _ := root["properties"].(map[string]any)
	spec, ok := props["spec"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no schema for spec", file)
	}
	out := map[string]int64{}
	walkLimits(t, "spec", spec, out)
	return out
}

// walkLimits records node's limits and those of its properties and items.
func walkLimits(t *testing.T, path string, node map[string]any, out map[string]int64) {
	t.Helper()
	for _, kw := range []string{"maxItems", "maxLength"} {
		if v, ok := node[kw]; ok {
			n, ok := v.(float64)
			if !ok {
				t.Fatalf("%s %s is %v, not a number", path, kw, v)
			}
			out[fmt.Sprintf("%s %s", path, kw)] = int64(n)
		}
	}
	if items, ok := node["items"].(map[string]any); ok {
		walkLimits(t, path+"[]", items, out)
	}
	props, _ := node["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		child, ok := props[name].(map[string]any)
		if !ok {
			t.Fatalf("%s.%s: schema is %T", path, name, props[name])
		}
		walkLimits(t, path+"."+name, child, out)
	}
}

// TestEveryCustomLimitIsChecked builds, for each limit of customLimits, a
// custom entry past that one limit only, and wants checkCustomLimits to
// report exactly that field: a limit the CRD and the table agree on is
// also enforced where policies never meet the API server.
func TestEveryCustomLimitIsChecked(t *testing.T) {
	for key, limit := range customLimits {
		schemaPath, keyword, _ := strings.Cut(key, " ")
		entries := []v1alpha1.Toolchain{{}}
		v := reflect.ValueOf(&entries).Elem()
		p := field.NewPath("spec", "toolchains", "custom")
		for _, seg := range strings.Split(strings.ReplaceAll(strings.TrimPrefix(schemaPath, "custom"), "[]", ".[]"), ".")[1:] {
			if seg == "[]" {
				if v.Len() == 0 {
					v.Set(reflect.MakeSlice(v.Type(), 1, 1))
				}
				v, p = v.Index(0), p.Index(0)
				continue
			}
			if v.Kind() == reflect.Pointer {
				if v.IsNil() {
					v.Set(reflect.New(v.Type().Elem()))
				}
				v = v.Elem()
			}
			f, ok := fieldByJSONName(v.Type(), seg)
			if !ok {
				t.Fatalf("%s: %s has no field %q", key, v.Type(), seg)
			}
			v, p = v.FieldByIndex(f.Index), p.Child(seg)
		}
		want := field.TooLong(p, "", limit)
		switch keyword {
		case "maxItems":
			v.Set(reflect.MakeSlice(v.Type(), limit+1, limit+1))
			want = field.TooMany(p, limit+1, limit)
		case "maxLength":
			v.SetString(strings.Repeat("a", limit+1))
		default:
			t.Fatalf("%s: unknown keyword %q", key, keyword)
		}
		got := checkCustomLimits(field.NewPath("spec", "toolchains", "custom"), entries)
		if len(got) != 1 || got[0].Field != want.Field || got[0].Type != want.Type {
			t.Errorf("%s: errors %v, want only %v", key, got, want)
		}
	}
}

// fieldByJSONName finds the field of t whose JSON name is name.
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}
