package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/pkg/exception"
)

// exceptionDoc is a SlimImageException document: metadata (flow YAML) and
// the spec lines after policies and rules.
func exceptionDoc(metadata, spec string) string {
	return "apiVersion: slimgate.dev/v1alpha1\nkind: SlimImageException\nmetadata: " + metadata +
		"\nspec:\n  policies: [\"*\"]\n  rules: [\"*\"]\n  reason: the SDK image runs the CI builds\n" + spec
}

// sdkLayout writes the Go SDK image to an OCI layout and returns its
// reference and manifest digest.
func sdkLayout(t *testing.T) (ref, digest string) {
	t.Helper()
	sdk := buildImage(t, goSDKEnv, goSDKSteps...)
	d, err := sdk.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return "oci:" + writeLayout(t, map[string]v1.Image{"sdk": sdk}) + ":sdk", d.String()
}

// --exceptions waives findings as the webhook would in --namespace: the
// finding stays in the output, marked excepted, and the image is allowed.
// Exceptions of another namespace, for another digest, expired, limited
// to workloads, or longer than the policy's maxDuration, waive nothing.
func TestCheckHonoursExceptions(t *testing.T) {
	ref, digest := sdkLayout(t)
	soon := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	expires := "  expires: \"" + soon + "\"\n"
	other := "sha256:" + strings.Repeat("0", 64)
	cases := []struct {
		name      string
		doc       string
		namespace string
		waived    bool
		stderr    string
	}{
		{"by digest", exceptionDoc("{name: ci-sdk}", "  digests: [\""+digest+"\"]\n"+expires), "", true, ""},
		{"by image glob, explicit namespace", exceptionDoc("{name: ci-sdk, namespace: ci}", "  images: [\"oci:*:sdk\"]\n"+expires), "ci", true, ""},
		{"another namespace", exceptionDoc("{name: ci-sdk, namespace: ci}", "  images: [\"oci:*\"]\n"+expires), "", false, "not in --namespace default"},
		{"another digest", exceptionDoc("{name: ci-sdk}", "  digests: [\""+other+"\"]\n"+expires), "", false, ""},
		{"expired", exceptionDoc("{name: ci-sdk}", "  images: [\"oci:*\"]\n  expires: \"2020-01-01T00:00:00Z\"\n"), "", false, "expired at 2020-01-01T00:00:00Z"},
		{"limited to a workload", exceptionDoc("{name: ci-sdk}", "  images: [\"oci:*\"]\n  workloads: [{kind: Deployment, name: ci}]\n"+expires), "", false, "limited to workloads"},
		{"longer than maxDuration", exceptionDoc("{name: ci-sdk}", "  images: [\"oci:*\"]\n  expires: \""+time.Now().Add(100*24*time.Hour).UTC().Format(time.RFC3339)+"\"\n"), "", false, "more than 2160h0m0s from now, the most policy default allows"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"check", "--output", "json", "--exceptions", writePolicy(t, tc.doc), ref}
			if tc.namespace != "" {
				args = append(args, "--namespace", tc.namespace)
			}
			code, out, errOut := runCLI(t, args...)
			want := exitDenied
			if tc.waived {
				want = exitAllowed
			}
			if code != want {
				t.Fatalf("exit %d, want %d; stderr: %s", code, want, errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr does not say %q:\n%s", tc.stderr, errOut)
			}
			var r struct {
				Images []struct {
					Verdict  string `json:"verdict"`
					Findings []struct {
						Rule     string `json:"rule"`
						Action   string `json:"action"`
						Excepted *struct {
							Exception, Namespace, Reason string
							Expires                      time.Time
						} `json:"excepted"`
					} `json:"findings"`
				} `json:"images"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Images) != 1 || len(r.Images[0].Findings) == 0 {
				t.Fatalf("output %s: %v", out, err)
			}
			for _, f := range r.Images[0].Findings {
				if (f.Excepted != nil) != tc.waived || f.Action != "deny" {
					t.Errorf("finding %s: action %s, excepted %+v; want deny, excepted %v", f.Rule, f.Action, f.Excepted, tc.waived)
				}
				if f.Excepted != nil && (f.Excepted.Exception != "ci-sdk" || f.Excepted.Reason != "the SDK image runs the CI builds" || f.Excepted.Expires.IsZero()) {
					t.Errorf("finding %s excepted by %+v", f.Rule, f.Excepted)
				}
			}
		})
	}

	// The text output says so too.
	path := writePolicy(t, exceptionDoc("{name: ci-sdk}", "  digests: [\""+digest+"\"]\n"+expires))
	code, out, errOut := runCLI(t, "check", "--exceptions", path, ref)
	if code != exitAllowed || !strings.Contains(out, "ALLOW "+ref) || !strings.Contains(out, "[excepted] ") ||
		!strings.Contains(out, "exception: default/ci-sdk until "+soon+": the SDK image runs the CI builds") {
		t.Errorf("exit %d, text output:\n%s\nstderr: %s", code, out, errOut)
	}
}

// A malformed exceptions file is a usage error (exit 2) naming the field.
func TestCheckRefusesBadExceptions(t *testing.T) {
	ref, _ := sdkLayout(t)
	path := writePolicy(t, exceptionDoc("{name: e}", "  images: [\"*\"]\n"))
	code, _, errOut := runCLI(t, "check", "--exceptions", path, ref)
	if code != exitError || !strings.Contains(errOut, "--exceptions") || !strings.Contains(errOut, "spec.expires") {
		t.Errorf("exit %d, stderr %s; want 2 naming spec.expires", code, errOut)
	}
}

// --exceptions picks the exceptions the webhook would consider: the first
// exception.MaxPerNamespace by name of the namespace's unexpired ones,
// also when some of them a check outside the cluster cannot apply (one
// limited to workloads takes its place as in the cluster), so that the
// 65th by name waives nothing here either.
func TestCheckSelectsExceptionsAsTheWebhook(t *testing.T) {
	ref, digest := sdkLayout(t)
	expires := "  expires: \"" + time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339) + "\"\n"
	docs := []string{
		exceptionDoc("{name: z-ci}", "  digests: [\""+digest+"\"]\n"+expires),
		exceptionDoc("{name: a-limited}", "  images: [\"oci:*\"]\n  workloads: [{kind: Deployment, name: ci}]\n"+expires),
		exceptionDoc("{name: a-expired}", "  images: [\"oci:*\"]\n  expires: \"2020-01-01T00:00:00Z\"\n"),
	}
	for i := range exception.MaxPerNamespace - 1 {
		docs = append(docs, exceptionDoc(fmt.Sprintf("{name: b%02d}", i), "  images: [\"nothing/*\"]\n"+expires))
	}
	path := writePolicy(t, strings.Join(docs, "---\n"))
	code, _, errOut := runCLI(t, "check", "--exceptions", path, ref)
	if code != exitDenied {
		t.Errorf("exit %d, want %d: the 65th exception by name applied; stderr: %s", code, exitDenied, errOut)
	}
	for _, want := range []string{"a-limited not applied: it is limited to workloads", "a-expired not applied: it expired",
		"1 exceptions not applied: at most 64 per namespace"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	// The control: without the one limited to workloads, z-ci is the 64th.
	path = writePolicy(t, strings.Join(append(docs[:1:1], docs[2:]...), "---\n"))
	if code, _, errOut := runCLI(t, "check", "--exceptions", path, ref); code != exitAllowed {
		t.Errorf("exit %d, want %d: the 64th exception by name did not apply; stderr: %s", code, exitAllowed, errOut)
	}
}
