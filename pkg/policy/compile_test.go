package policy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
)

// Compile works on a copy with defaults applied: the caller's spec (an
// informer cache's object) is neither changed by it nor able to change it
// later.
func TestCompileCopiesAndDefaults(t *testing.T) {
	spec := &v1alpha1.SlimImagePolicySpec{Exclude: v1alpha1.Exclusions{Images: []string{"registry.k8s.io/*"}}}
	c, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Mode != "" || spec.Exclude.EphemeralContainers != nil {
		t.Errorf("Compile wrote defaults into the caller's spec: %+v", spec)
	}
	got := c.Spec()
	if got.Mode != v1alpha1.ModeEnforce || got.OnInspectionError != v1alpha1.InspectionErrorAllow || !c.ExcludesEphemeralContainers() {
		t.Errorf("defaults not applied: %+v", got)
	}
	spec.Exclude.Images[0] = "*"
	spec.Mode = v1alpha1.ModeAudit
	if c.ExcludesImage("ghcr.io/org/app:1") || c.Spec().Mode != v1alpha1.ModeEnforce || c.Spec().Exclude.Images[0] != "registry.k8s.io/*" {
		t.Error("a change to the caller's spec reached the compiled policy")
	}
}

// An invalid spec reports every problem and is still applied as far as it
// is understood: the known rules judge, the rest match nothing.
func TestCompileInvalidStillApplies(t *testing.T) {
	_, f := loadFixture(t, "testdata/images/golang-1.24.4-bookworm.json")
	spec := &v1alpha1.SlimImagePolicySpec{
		Mode:              "Block",
		Toolchains:        v1alpha1.ToolchainRules{Deny: []string{RuleToolchainGo, "toolchain.cobol", "toolchain.[gr]o"}},
		Exclude:           v1alpha1.Exclusions{Images: []string{"[gr]hcr.io/*", "ghcr.io/org/*"}},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Near"}}},
	}
	c, err := Compile(spec)
	if err == nil {
		t.Fatal("Compile accepted an invalid spec")
	}
	for _, want := range []string{"spec.mode", "spec.toolchains.deny[1]", "spec.toolchains.deny[2]", "spec.exclude.images[0]", "spec.namespaceSelector"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if c == nil {
		t.Fatal("no compiled policy with the errors")
	}
	res := c.Evaluate(context.Background(), f)
	if diff := cmp.Diff([]string{RuleToolchainGo}, ruleIDs(res)); diff != "" {
		t.Errorf("rules applied (-want +got):\n%s", diff)
	}
	if res.Verdict != VerdictDeny {
		t.Errorf("an unknown mode is not Enforce: %s", res.Verdict)
	}
	for _, note := range []string{`policy mode "Block"`, `unknown rules ["toolchain.cobol" "toolchain.[gr]o"]`} {
		if !slicesContainsSubstring(res.Notes, note) {
			t.Errorf("notes %q lack %q", res.Notes, note)
		}
	}
	if c.SelectsNamespace(map[string]string{"team": "a"}) || c.SelectsNamespace(nil) {
		t.Error("an unparseable selector selected a namespace")
	}
	if c.ExcludesImage("ghcr.io/x:1") || !c.ExcludesImage("ghcr.io/org/app:1") {
		t.Error("exclusions: the malformed glob must match nothing, the valid one its images")
	}
	if diff := cmp.Diff(Evaluate(spec, f), res); diff != "" {
		t.Errorf("Evaluate differs from the compiled form (-Evaluate +Compiled):\n%s", diff)
	}
}

func slicesContainsSubstring(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestSelectsNamespace(t *testing.T) {
	team := map[string]string{"kubernetes.io/metadata.name": "team", "slimgate.dev/enabled": "true"}
	other := map[string]string{"kubernetes.io/metadata.name": "other"}
	cases := []struct {
		name        string
		sel         *metav1.LabelSelector
		team, other bool
	}{
		{"absent", nil, true, true},
		{"empty", &metav1.LabelSelector{}, true, true},
		{"opt-in label", &metav1.LabelSelector{MatchLabels: map[string]string{"slimgate.dev/enabled": "true"}}, true, false},
		{"not in", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"team"}}}}, false, true},
	}
	for _, tc := range cases {
		c, err := Compile(&v1alpha1.SlimImagePolicySpec{NamespaceSelector: tc.sel})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.SelectsNamespace(team); got != tc.team {
			t.Errorf("%s: selects team = %v, want %v", tc.name, got, tc.team)
		}
		if got := c.SelectsNamespace(other); got != tc.other {
			t.Errorf("%s: selects other = %v, want %v", tc.name, got, tc.other)
		}
	}
}

func TestExcludesImage(t *testing.T) {
	cases := []struct {
		pattern, ref string
		want         bool
	}{
		{"docker.io/library/*", "golang:1", true},
		{"index.docker.io/library/*", "golang:1", true},
		{"docker.io/library/*", "docker.io/golang:1", true},
		{"golang:*", "golang:1", true},
		{"docker.io/library/*", "ghcr.io/x/y:1", false},
		{"registry.k8s.io/*", "registry.k8s.io/pause:3.9", true},
		{"registry.k8s.io/pause:latest", "registry.k8s.io/pause", true},
		{"registry.k8s.io/*", "ghcr.io/registry.k8s.io/pause:1", false},
		{"UPPER/*", "UPPER/x", true}, // not a reference: matched as written only
		{"docker.io/*", "UPPER/x", false},
	}
	for _, tc := range cases {
		c, err := Compile(&v1alpha1.SlimImagePolicySpec{Exclude: v1alpha1.Exclusions{Images: []string{tc.pattern}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ExcludesImage(tc.ref); got != tc.want {
			t.Errorf("%q excludes %q = %v, want %v", tc.pattern, tc.ref, got, tc.want)
		}
	}
	c, err := Compile(&v1alpha1.SlimImagePolicySpec{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ExcludesImage("golang:1") {
		t.Error("a policy without exclusions excluded an image")
	}
	no := false
	if c, _ := Compile(&v1alpha1.SlimImagePolicySpec{Exclude: v1alpha1.Exclusions{EphemeralContainers: &no}}); c.ExcludesEphemeralContainers() {
		t.Error("ephemeralContainers: false still excludes them")
	}
}

// ExcludesImage parses a reference only when a glob could match one of its
// normalised spellings; the shortcut must never change the answer. The
// reference implementation matches every spelling.
func TestExcludesImageShortcut(t *testing.T) {
	digest := "@sha256:" + strings.Repeat("ab", 32)
	refs := []string{"golang:1", "golang", "library/golang:1", "docker.io/golang:1", "docker.io/library/golang",
		"index.docker.io/library/golang:1", "registry.k8s.io/pause", "registry.k8s.io/pause:3.9", "registry.k8s.io",
		"localhost/app", "localhost:5000/app:1", "127.0.0.1:5000/shop/part0:1.0", "ghcr.io/org/app:1" + digest,
		"ghcr.io/org/app" + digest, "UPPER/x", "a/b/c", "docker.io", "registry.k8s.io.evil.com/pause:1"}
	patterns := []string{"registry.k8s.io/*", "registry.k8s.io/pause:latest", "docker.io/library/*", "index.docker.io/*",
		"docker.io/*", "*", "*/golang:*", "golang:*", "localhost/*", "localhost/app:latest", "ghcr.io/org/app" + digest,
		"ghcr.io/org/*", "127.0.0.1:5000/*", "library/*", "registry.k8s.io?pause*", "d?cker.io/*", "registry.k8s.io",
		"ghcr.io/org/app:latest", "index.docker.io", "registry.k8s.io*"}
	spellings := func(ref string) []string {
		out := []string{ref}
		r, err := name.ParseReference(ref)
		if err != nil {
			return out
		}
		out = append(out, r.Name())
		if rest, ok := strings.CutPrefix(r.Name(), name.DefaultRegistry+"/"); ok {
			out = append(out, "docker.io/"+rest)
		}
		return out
	}
	excluded := 0
	for _, p := range patterns {
		c, err := Compile(&v1alpha1.SlimImagePolicySpec{Exclude: v1alpha1.Exclusions{Images: []string{p}}})
		if err != nil {
			t.Fatal(err)
		}
		g, err := glob.Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range refs {
			want := slices.ContainsFunc(spellings(ref), g.Match)
			if got := c.ExcludesImage(ref); got != want {
				t.Errorf("%q excludes %q = %v, want %v (spellings %q)", p, ref, got, want, spellings(ref))
			}
			if want {
				excluded++
			}
		}
	}
	if excluded == 0 {
		t.Fatal("no pair excluded: the test proves nothing")
	}
}

// BenchmarkEvaluateCompiled is BenchmarkEvaluate with the policy compiled
// once, as the webhook and the CLI use it.
func BenchmarkEvaluateCompiled(b *testing.B) {
	_, f := loadFixture(b, "testdata/images/golang-1.24.4-bookworm.json")
	c, err := Compile(&Default().Spec)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Evaluate(context.Background(), f)
	}
}

// BenchmarkCompile is what a policy costs once per generation.
func BenchmarkCompile(b *testing.B) {
	spec := Default().Spec
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(&spec); err != nil {
			b.Fatal(err)
		}
	}
}
