package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slimgate.dev/slimgate/api/v1alpha1"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestPinned(t *testing.T) {
	for ref, want := range map[string]bool{
		"golang:1.19":                       false,
		"golang":                            false,
		"localhost:5000/app":                false,
		"localhost:5000/app:1":              false,
		"ghcr.io/org/app@" + testDigest:     true,
		"ghcr.io/org/app:1.2@" + testDigest: true,
		"oci:/layouts/app@" + testDigest:    true,
		"app@sha256:tooshort":               false,
		"app@md5:" + testDigest[7:]:         false,
		"app:1@":                            false,
	} {
		if got := Pinned(ref); got != want {
			t.Errorf("Pinned(%q) = %v, want %v", ref, got, want)
		}
	}
}

// spec.requireDigests makes a reference without a digest a reference.digest
// finding, whatever the image holds, with the action of the policy's mode;
// a pinned reference, or the option left false, adds nothing.
func TestRequireDigests(t *testing.T) {
	slim := historyFacts(t, nil, "COPY app /app")
	for _, tc := range modeCases {
		spec := Default().Spec
		spec.Mode = tc.mode
		spec.RequireDigests = true
		for _, ref := range []string{"example.test/app:1", "example.test/app"} {
			f := *slim
			f.Reference = ref
			res := Evaluate(&spec, &f)
			checkRules(t, res, []string{RuleReferenceDigest})
			if res.Verdict != tc.verdict {
				t.Errorf("%s %s: verdict %s, want %s", tc.mode, ref, res.Verdict, tc.verdict)
			}
			for _, fd := range res.Findings {
				if fd.Action != tc.action || !strings.Contains(fd.Remedy, "webhook.pinDigests") {
					t.Errorf("%s %s: finding %+v", tc.mode, ref, fd)
				}
			}
		}
		pinned := *slim
		pinned.Reference = "example.test/app@" + testDigest
		checkRules(t, Evaluate(&spec, &pinned), nil)

		// The check needs no facts: an image that could not be inspected
		// is still named by a tag.
		for _, onError := range []v1alpha1.InspectionErrorAction{v1alpha1.InspectionErrorAllow, v1alpha1.InspectionErrorDeny} {
			spec.OnInspectionError = onError
			res := InspectionFailed(&spec, "example.test/app:1", Failure{Reason: "RegistryUnavailable", Detail: "503"})
			if res.Verdict != tc.verdict || !slices.Contains(ruleIDs(res), RuleReferenceDigest) {
				t.Errorf("%s, onInspectionError %s: verdict %s, rules %v; want %s with %s", tc.mode, onError, res.Verdict, ruleIDs(res), tc.verdict, RuleReferenceDigest)
			}
		}
		spec.OnInspectionError = v1alpha1.InspectionErrorAllow
		if res := InspectionFailed(&spec, "example.test/app@"+testDigest, Failure{Reason: "RegistryUnavailable", Detail: "503"}); res.Verdict != VerdictAllow || len(res.Findings) != 0 {
			t.Errorf("%s: a pinned reference that could not be inspected: %+v", tc.mode, res)
		}
	}

	off := Default().Spec
	f := *slim
	checkRules(t, Evaluate(&off, &f), nil)
	if res := InspectionFailed(&off, "example.test/app:1", Failure{Reason: "RegistryUnavailable", Detail: "503"}); res.Verdict != VerdictAllow || len(res.Findings) != 0 {
		t.Errorf("requireDigests false: %+v", res)
	}
}

// The finding says which tag can move, in the words a denial quotes.
func TestRequireDigestsMessage(t *testing.T) {
	spec := &v1alpha1.SlimImagePolicySpec{RequireDigests: true}
	for ref, want := range map[string]string{
		"registry.example:5000/app:1.2": `Image not pinned by digest: tag "1.2", which can be moved after the check`,
		"registry.example:5000/app":     "Image not pinned by digest: no tag and no digest (the kubelet pulls whatever latest names then)",
		"not a reference!":              "Image not pinned by digest: no digest",
	} {
		got := digestFindings(spec, ref, ActionDeny)
		if len(got) != 1 {
			t.Fatalf("%s: %d findings", ref, len(got))
		}
		if diff := cmp.Diff(want, got[0].Message); diff != "" {
			t.Errorf("%s (-want +got):\n%s", ref, diff)
		}
	}
}

// requireDigests is a field of the policy document.
func TestRequireDigestsLoads(t *testing.T) {
	p, err := Load([]byte("apiVersion: slimgate.dev/v1alpha1\nkind: SlimImagePolicy\nmetadata: {name: pinned}\nspec:\n  requireDigests: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Spec.RequireDigests {
		t.Error("requireDigests not read")
	}
	if Default().Spec.RequireDigests {
		t.Error("the default policy requires digests")
	}
}
