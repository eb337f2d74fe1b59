package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
)

const header = "apiVersion: slimgate.dev/v1alpha1\nkind: SlimImagePolicy\nmetadata: {name: p}\n"

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		// want are substrings the error must contain (field paths).
		want []string
	}{
		{"unknown field", header + "spec:\n  mod: Enforce\n", []string{"spec.mod", "unknown field"}},
		{"unknown nested field", header + "spec:\n  toolchains: {denny: [toolchain.go]}\n", []string{"spec.toolchains.denny"}},
		{"duplicate field", header + "spec:\n  mode: Enforce\n  mode: Warn\n", []string{"mode"}},
		{"bad mode", header + "spec:\n  mode: Block\n", []string{"spec.mode", `"Block"`}},
		{"lower-case mode", header + "spec:\n  mode: enforce\n", []string{"spec.mode"}},
		{"bad onInspectionError", header + "spec:\n  onInspectionError: Maybe\n", []string{"spec.onInspectionError"}},
		{"bad existingWorkloads", header + "spec:\n  existingWorkloads: keep\n", []string{"spec.existingWorkloads", `"keep"`}},
		{"bad glob", header + "spec:\n  toolchains: {deny: [\"toolchain.[\"]}\n", []string{"spec.toolchains.deny[0]", "glob"}},
		{"unknown rule id", header + "spec:\n  toolchains: {deny: [toolchain.go, toolchain.cobol]}\n", []string{"spec.toolchains.deny[1]", "toolchain.cobol"}},
		{"unknown allow glob", header + "spec:\n  toolchains: {allow: [\"toolchan.*\"]}\n", []string{"spec.toolchains.allow[0]"}},
		{"denied and allowed", header + "spec:\n  toolchains: {deny: [toolchain.go], allow: [toolchain.go]}\n", []string{"spec.toolchains.allow[0]"}},
		{"zero budget", header + "spec:\n  sizeBudget: {maxCompressed: \"0\"}\n", []string{"spec.sizeBudget.maxCompressed"}},
		{"negative budget", header + "spec:\n  sizeBudget: {maxCompressed: -1Gi}\n", []string{"spec.sizeBudget.maxCompressed"}},
		{"zero layers", header + "spec:\n  sizeBudget: {maxLayers: 0}\n", []string{"spec.sizeBudget.maxLayers"}},
		{"bad platform", header + "spec:\n  platforms: [linux/amd64, \"Linux AMD64\"]\n", []string{"spec.platforms[1]"}},
		{"bad selector", header + "spec:\n  namespaceSelector:\n    matchExpressions: [{key: team, operator: Near}]\n", []string{"spec.namespaceSelector.matchExpressions[0].operator"}},
		{"bad exclude glob", header + "spec:\n  exclude: {images: [\"registry.k8s.io/[\"]}\n", []string{"spec.exclude.images[0]"}},
		{"registry with path", header + "spec:\n  registries: {allow: [\"https://ghcr.io/org\"]}\n", []string{"spec.registries.allow[0]"}},
		// Globs of other dialects compile nowhere: validation accepts only
		// what matching implements ('*' and '?').
		{"character class in exclude", header + "spec:\n  exclude: {images: [\"[gr]hcr.io/*\"]}\n", []string{"spec.exclude.images[0]", "only * and ? are wildcards"}},
		{"alternatives in exclude", header + "spec:\n  exclude: {images: [\"ghcr.io/{a,b}/*\"]}\n", []string{"spec.exclude.images[0]", "only * and ? are wildcards"}},
		{"character class in registries", header + "spec:\n  registries: {allow: [\"[gr]hcr.io\"]}\n", []string{"spec.registries.allow[0]", "only * and ? are wildcards"}},
		{"character class in rule", header + "spec:\n  toolchains: {deny: [\"toolchain.[gr]o\"]}\n", []string{"spec.toolchains.deny[0]", "only * and ? are wildcards"}},
		{"escape in rule", header + "spec:\n  toolchains: {allow: [\"toolchain\\\\.go\"]}\n", []string{"spec.toolchains.allow[0]", "only * and ? are wildcards"}},
		{"wrong kind", "apiVersion: slimgate.dev/v1alpha1\nkind: Pod\nspec: {}\n", []string{"kind", `"Pod"`}},
		{"wrong apiVersion", "apiVersion: v1\nkind: SlimImagePolicy\nspec: {}\n", []string{"apiVersion"}},
		{"missing kind", "apiVersion: slimgate.dev/v1alpha1\nspec: {}\n", []string{"kind: Required"}},
		{"all at once", header + "spec:\n  mode: Block\n  sizeBudget: {maxLayers: -3}\n  extra: 1\n", []string{"spec.mode", "spec.sizeBudget.maxLayers", "spec.extra"}},
		{"wrong type", header + "spec:\n  mode: [Enforce]\n", []string{"spec.mode"}},
		{"empty", "  \n", []string{"empty"}},
		{"not yaml", "spec: [", []string{"parsing policy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Load accepted it: %+v", p.Spec)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// The patterns policies and the egress tests use stay valid under the one
// glob dialect, IPv6 brackets in hosts included.
func TestPatternsInUseStayValid(t *testing.T) {
	doc := header + `spec:
  toolchains: {deny: ["toolchain.*", "build.go", "build.?o"], allow: ["toolchain.c?"]}
  exclude: {images: ["registry.k8s.io/*", "*/golang:1.2?", "docker.io/library/*", "ghcr.io/org/*@sha256:*"]}
  registries:
    allow: ["*", "ghcr.io", "GHCR.io", "*.example.com", "reg.local:5000", "[::1]:5000", "::1", "127.0.0.1", "localhost", "ghcr.*"]
    insecure: ["127.0.0.1:5000", "localhost", "reg.local:5000", "::1", "169.254.169.254"]
`
	if _, err := Load([]byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDefaultsAndJSON(t *testing.T) {
	yamlDoc := header + "spec:\n  toolchains: {deny: [\"toolchain.*\"]}\n"
	jsonDoc := `{"apiVersion":"slimgate.dev/v1alpha1","kind":"SlimImagePolicy","metadata":{"name":"p"},"spec":{"toolchains":{"deny":["toolchain.*"]}}}`
	for _, doc := range []string{yamlDoc, jsonDoc} {
		p, err := Load([]byte(doc))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		tr := true
		want := v1alpha1.SlimImagePolicySpec{
			Mode:              v1alpha1.ModeEnforce,
			OnInspectionError: v1alpha1.InspectionErrorAllow,
			ExistingWorkloads: v1alpha1.ExistingWorkloadsKeep,
			Toolchains:        v1alpha1.ToolchainRules{Deny: []string{"toolchain.*"}},
			Exclude:           v1alpha1.Exclusions{EphemeralContainers: &tr},
		}
		if diff := cmp.Diff(want, p.Spec); diff != "" {
			t.Errorf("spec (-want +got):\n%s", diff)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	d := Default()
	if d.Name != "default" || d.Spec.Mode != v1alpha1.ModeEnforce || d.Spec.OnInspectionError != v1alpha1.InspectionErrorAllow ||
		d.Spec.ExistingWorkloads != v1alpha1.ExistingWorkloadsKeep {
		t.Errorf("default policy: %+v", d.ObjectMeta)
	}
	if d.Spec.NamespaceSelector == nil || len(d.Spec.NamespaceSelector.MatchLabels)+len(d.Spec.NamespaceSelector.MatchExpressions) != 0 {
		t.Errorf("namespaceSelector %v, want empty", d.Spec.NamespaceSelector)
	}
	if got := d.Spec.SizeBudget.MaxCompressed.String(); got != "1Gi" || *d.Spec.SizeBudget.MaxLayers != 60 {
		t.Errorf("size budget %s/%d", got, *d.Spec.SizeBudget.MaxLayers)
	}
	sel := selectRules(d.Spec.Toolchains)
	for _, r := range Rules() {
		applied := sel.rules[r.ID]
		wantApplied := r.Category != CategoryInspection && r.Category != CategoryReference
		if applied != wantApplied {
			t.Errorf("default policy applies %s: %v, want %v", r.ID, applied, wantApplied)
		}
	}
}

// TestSamples checks that the shipped default sample is the embedded
// default byte for byte and that every sample loads.
func TestSamples(t *testing.T) {
	dir := filepath.Join("..", "..", "config", "samples")
	sample, err := os.ReadFile(filepath.Join(dir, "slimgate_v1alpha1_slimimagepolicy_default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sample, DefaultYAML()) {
		t.Error("config/samples default policy differs from pkg/policy/default-policy.yaml")
	}
	files, err := filepath.Glob(filepath.Join(dir, "slimgate_v1alpha1_*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("samples: %v %v", files, err)
	}
	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Load(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if !bytes.Contains(kust, []byte(filepath.Base(f))) {
			t.Errorf("kustomization.yaml does not list %s", filepath.Base(f))
		}
	}
}

func TestRulesCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules() {
		if seen[r.ID] {
			t.Errorf("duplicate rule id %s", r.ID)
		}
		seen[r.ID] = true
		if r.Title == "" || r.Description == "" || r.Remedy == "" || r.Category == "" {
			t.Errorf("rule %s is incomplete: %+v", r.ID, r)
		}
		if strings.Contains(r.RemedyFor(""), "{version}") {
			t.Errorf("rule %s remedy keeps its placeholder", r.ID)
		}
	}
	for _, id := range []string{"toolchain.go", "toolchain.jdk", "toolchain.maven", "toolchain.gradle", "toolchain.rust", "toolchain.dotnet-sdk", "toolchain.cc", "toolchain.node-build",
		"build.go", "build.maven", "build.gradle", "build.cargo", "build.npm", "build.yarn", "build.dotnet", "build.make", "build.cc", "build.javac",
		"size.compressed", "size.layers", "inspection.invalid", "inspection.failed", "reference.digest"} {
		if !seen[id] {
			t.Errorf("catalog lacks %s", id)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(DefaultYAML())
	for _, name := range []string{"optin", "audit"} {
		if data, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "slimgate_v1alpha1_slimimagepolicy_"+name+".yaml")); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(header + "spec:\n  mode: Block\n  toolchains: {deny: [\"[\"]}\n"))
	f.Add([]byte(`{"apiVersion":"slimgate.dev/v1alpha1","kind":"SlimImagePolicy","spec":{"sizeBudget":{"maxCompressed":"1Ki"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load(data)
		if err != nil {
			if p != nil {
				t.Fatal("Load returned a policy with an error")
			}
			return
		}
		if p == nil {
			t.Fatal("Load returned neither policy nor error")
		}
		if errs := Validate(&p.Spec); len(errs) > 0 {
			t.Fatalf("loaded policy does not validate: %v", errs)
		}
		if p.Spec.Mode == "" || p.Spec.OnInspectionError == "" || p.Spec.ExistingWorkloads == "" || p.Spec.Exclude.EphemeralContainers == nil {
			t.Fatalf("defaults not applied: %+v", p.Spec)
		}
	})
}

func FuzzEvaluateHistory(f *testing.F) {
	for _, file := range fixtureFiles(f) {
		_, facts := loadFixture(f, file)
		for _, h := range facts.History {
			f.Add(h.CreatedBy, "")
		}
	}
	f.Add(temurinJDK, "GOLANG_VERSION=1.22")
	f.Add("RUN |3 A=1 /bin/sh -c 'unterminated \"quote $(x", "PHPIZE_DEPS=gcc make")
	f.Add("RUN /bin/sh -c su -c \"sh -c 'sh -c \\\"go build\\\"'\"", "")
	def := Default()
	f.Fuzz(func(t *testing.T, createdBy, env string) {
		facts := historyFacts(t, []string{env, "PATH=/usr/bin"}, "ADD rootfs.tar / # buildkit", createdBy, createdBy+"\n"+createdBy)
		res := Evaluate(&def.Spec, facts)
		for _, fd := range res.Findings {
			if fd.Rule == "" || fd.Action == "" || fd.Message == "" {
				t.Fatalf("incomplete finding %+v", fd)
			}
		}
		if (res.Verdict == VerdictDeny) != (len(res.Findings) > 0) {
			t.Fatalf("verdict %s with %d findings", res.Verdict, len(res.Findings))
		}
		if res.Bloat != nil && res.Bloat.ToolchainBytes > res.Bloat.TotalBytes {
			t.Fatalf("bloat %+v exceeds the image", res.Bloat)
		}
		_ = Evaluate(&def.Spec, &image.Facts{History: []image.HistoryEntry{{CreatedBy: createdBy, Layer: 5, Index: 0}}, HistoryMapped: true})
	})
}
