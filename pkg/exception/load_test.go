package exception

import (
	"strings"
	"testing"
	"time"
)

const header = "apiVersion: slimgate.dev/v1alpha1\nkind: SlimImageException\n"

func TestLoad(t *testing.T) {
	data := `# exceptions for CI
` + header + `metadata: {name: ci-runner, namespace: ci}
spec:
  policies: ["*"]
  rules: ["toolchain.*"]
  images: ["ghcr.io/org/ci-runner:*"]
  workloads: [{kind: Deployment, name: runner}]
  containers: [runner]
  reason: the runner builds code
  expires: "2025-07-01T00:00:00Z"
---
# a comment-only document is skipped
---
{"apiVersion": "slimgate.dev/v1alpha1", "kind": "SlimImageException", "metadata": {"name": "vendor"},
 "spec": {"policies": ["default"], "rules": ["*"], "digests": ["` + digestA + `"], "reason": "vendor fix due", "expires": "2025-06-30T12:00:00+02:00"}}
`
	got, err := Load([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "ci-runner" || got[0].Namespace != "ci" || got[1].Name != "vendor" || got[1].Namespace != "" {
		t.Fatalf("loaded %+v", got)
	}
	if want := time.Date(2025, 6, 30, 10, 0, 0, 0, time.UTC); !got[1].Spec.Expires.Time.Equal(want) {
		t.Errorf("expires %s, want %s", got[1].Spec.Expires.Time, want)
	}
}

func TestLoadErrors(t *testing.T) {
	valid := "  policies: [\"*\"]\n  rules: [\"*\"]\n  reason: why\n  expires: \"2025-07-01T00:00:00Z\"\n"
	doc := func(spec string) string { return header + "metadata: {name: e}\nspec:\n" + spec }
	cases := []struct {
		name string
		data string
		want []string
	}{
		{"empty", "", []string{"no exception document"}},
		{"unknown field", doc(valid + "  images: [\"*\"]\n  expiry: tomorrow\n"), []string{"spec.expiry", "unknown field"}},
		{"duplicate field", doc(valid + "  images: [\"*\"]\n  reason: again\n"), []string{`"reason" already set`}},
		{"wrong kind", strings.Replace(doc(valid+"  images: [\"*\"]\n"), "SlimImageException", "SlimImagePolicy", 1), []string{"kind", "SlimImageException"}},
		{"no name", header + "spec:\n" + valid + "  images: [\"*\"]\n", []string{"metadata.name"}},
		{"neither images nor digests", doc(valid), []string{"at least one of images and digests"}},
		{"no reason", doc("  policies: [\"*\"]\n  rules: [\"*\"]\n  images: [\"*\"]\n  expires: \"2025-07-01T00:00:00Z\"\n"), []string{"spec.reason"}},
		{"blank reason", doc(strings.Replace(valid, "why", "\"  \"", 1) + "  images: [\"*\"]\n"), []string{"spec.reason"}},
		{"no expires", doc("  policies: [\"*\"]\n  rules: [\"*\"]\n  images: [\"*\"]\n  reason: why\n"), []string{"spec.expires"}},
		{"expires not RFC 3339", doc(strings.Replace(valid, "2025-07-01T00:00:00Z", "next friday", 1) + "  images: [\"*\"]\n"), []string{"decoding exception"}},
		{"no rules", doc("  policies: [\"*\"]\n  images: [\"*\"]\n  reason: why\n  expires: \"2025-07-01T00:00:00Z\"\n"), []string{"spec.rules"}},
		{"bad digest", doc(valid + "  digests: [\"sha256:abc\"]\n"), []string{"spec.digests[0]"}},
		{"character class in image", doc(valid + "  images: [\"[gr]hcr.io/*\"]\n"), []string{"spec.images[0]", "only * and ? are wildcards"}},
		{"bad container name", doc(valid + "  images: [\"*\"]\n  containers: [\"App_1\"]\n"), []string{"spec.containers[0]"}},
		{"bad workload kind", doc(valid + "  images: [\"*\"]\n  workloads: [{kind: Secret, name: x}]\n"), []string{"spec.workloads[0].kind"}},
		{"too many images", doc(valid + "  images: [" + strings.Repeat("\"a\",", maxImages) + "\"a\"]\n"), []string{"spec.images", "must have at most"}},
		{"one bad document of two", doc(valid+"  images: [\"*\"]\n") + "---\n" + doc(valid), []string{"document 2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.data))
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// Load stops at maxDocuments documents, whatever the file holds.
func TestLoadBoundsDocuments(t *testing.T) {
	one := header + "metadata: {name: e}\nspec: {policies: [\"*\"], rules: [\"*\"], images: [\"*\"], reason: r, expires: \"2025-07-01T00:00:00Z\"}\n"
	data := strings.Repeat(one+"---\n", maxDocuments+1)
	if _, err := Load([]byte(data)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Load of %d documents: %v, want refused", maxDocuments+1, err)
	}
	if got, err := Load([]byte(strings.Repeat(one+"---\n", 3))); err != nil || len(got) != 3 {
		t.Fatalf("Load of 3 documents: %d, %v", len(got), err)
	}
}
