package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestCheckCustomToolchain: a toolchain a policy declares in
// spec.toolchains.custom is detected by `slimgate check --policy`, with
// the policy's title and remedy; without the declaration the same image
// passes, and an invalid declaration is refused before any image is read.
func TestCheckCustomToolchain(t *testing.T) {
	dir := writeLayout(t, map[string]v1.Image{
		"sdk": buildImage(t, multiStageEnv,
			"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends acme-sdk-4 && rm -rf /var/lib/apt/lists/* # buildkit",
			`CMD ["/app"]`),
		"runtime": buildImage(t, multiStageEnv,
			"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends acme-runtime-4 && rm -rf /var/lib/apt/lists/* # buildkit",
			`CMD ["/app"]`),
	})
	const custom = "  toolchains:\n    custom:\n" +
		"      - id: toolchain.acme-sdk\n" +
		"        title: ACME SDK\n" +
		"        remedy: build with acme-sdk-{version} in a builder stage and run on acme-runtime-{version}\n" +
		"        version: {env: [ACME_VERSION], fallback: \"4\"}\n" +
		"        signals:\n          packages:\n            - pattern: 'acme-sdk-\\d+'\n"
	declared := writePolicy(t, policyHeader+"spec:\n"+custom)
	tests := []struct {
		name, policy, image string
		wantCode            int
		wantRules           []string
	}{
		{name: "declared, SDK image", policy: declared, image: "sdk", wantCode: exitDenied, wantRules: []string{"toolchain.acme-sdk"}},
		{name: "declared, runtime image", policy: declared, image: "runtime", wantCode: exitAllowed},
		{name: "not declared, SDK image", policy: writePolicy(t, policyHeader+"spec:\n  mode: Enforce\n"), image: "sdk", wantCode: exitAllowed},
		{name: "declared and allowed", policy: writePolicy(t, policyHeader+"spec:\n"+custom+"    allow: [toolchain.acme-sdk]\n"), image: "sdk", wantCode: exitAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "check", "--policy", tc.policy, "--output", "json", "oci:"+dir+":"+tc.image)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s\n%s", code, tc.wantCode, errOut, out)
			}
			r := decode(t, out)
			if diff := cmp.Diff(tc.wantRules, rules(r, 0)); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			for _, f := range r.Images[0].Findings {
				if !strings.HasPrefix(f.Message, "ACME SDK: ") || f.Remedy != "build with acme-sdk-4 in a builder stage and run on acme-runtime-4" {
					t.Errorf("finding %q, remedy %q: want the policy's title and remedy", f.Message, f.Remedy)
				}
			}
		})
	}

	bad := writePolicy(t, policyHeader+"spec:\n  toolchains:\n    custom:\n      - id: toolchain.go\n        title: Go again\n        remedy: x\n        signals: {env: [{key: GOFLAGS}]}\n")
	code, _, errOut := runCLI(t, "check", "--policy", bad, "oci:"+dir+":sdk")
	if code != exitError || !strings.Contains(errOut, "spec.toolchains.custom[0].id") {
		t.Errorf("a custom entry reusing a catalog id: exit %d, stderr %q; want exit %d naming the field", code, errOut, exitError)
	}
}
