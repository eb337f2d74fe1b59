package e2e

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// inHouseGo is a custom toolchain a platform team declares: it knows its
// Go build images by the GOTOOLCHAIN=local their base sets.
func inHouseGo() v1alpha1.Toolchain {
	return v1alpha1.Toolchain{
		ID:     "toolchain.in-house-go",
		Title:  "In-house Go build image",
		Remedy: "build in builder.example/go:{version} AS builder, run on runtime.example/static",
		Signals: v1alpha1.ToolchainSignals{
			Env: []v1alpha1.KeyValueSignal{{Key: "GOTOOLCHAIN", Value: "^local$", Strength: v1alpha1.StrengthStrong}},
		},
	}
}

// TestCustomToolchainEnforced: a toolchain declared in a policy's
// spec.toolchains.custom is stored by the API server, compiled by the
// webhook and decides admission, under the policy's own title.
func TestCustomToolchainEnforced(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	s := spec(v1alpha1.ModeEnforce, caseLabels(t))
	s.Toolchains = v1alpha1.ToolchainRules{Deny: []string{"toolchain.in-house-go"}, Custom: []v1alpha1.Toolchain{inHouseGo()}}
	policy(t, s)

	_, err := create(t, pod(ns, "sdk", e2e.reg.GoSDKApp()))
	mustDeny(t, err, "toolchain.in-house-go", "In-house Go build image")
	if strings.Contains(err.Error(), "toolchain.go") {
		t.Errorf("only the custom rule is denied, got:\n%v", err)
	}
	if _, err := create(t, pod(ns, "slim", e2e.reg.StaticApp())); err != nil {
		t.Errorf("multi-stage image refused: %v", err)
	}
}

// TestInvalidCustomToolchainRefusedByAPIServer: the CRD's schema checks
// custom entries (id form, unique ids, a package signal's names or
// pattern) before slimgate sees them.
func TestInvalidCustomToolchainRefusedByAPIServer(t *testing.T) {
	badID := inHouseGo()
	badID.ID = "go.in-house"
	noNames := inHouseGo()
	noNames.Signals.Packages = []v1alpha1.PackageSignal{{Strength: v1alpha1.StrengthWeak}}
	for _, c := range []struct {
		name   string
		custom []v1alpha1.Toolchain
		field  string
	}{
		{"id", []v1alpha1.Toolchain{badID}, "spec.toolchains.custom[0].id"},
		{"duplicate", []v1alpha1.Toolchain{inHouseGo(), inHouseGo()}, "spec.toolchains.custom[1]"},
		{"package signal", []v1alpha1.Toolchain{noNames}, "names or a pattern"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "invalid-custom-" + c.name},
				Spec: v1alpha1.SlimImagePolicySpec{Toolchains: v1alpha1.ToolchainRules{Custom: c.custom}}}
			mustRefuse(t, p, c.field)
		})
	}
}
