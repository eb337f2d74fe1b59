package policy

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// CategoryReference holds the rules about how an image is named rather
// than what it contains.
const CategoryReference Category = "reference"

// Pinned reports whether ref names its image by digest: "repo@sha256:…",
// "repo:tag@sha256:…" or a local "oci:PATH@sha256:…". A tag alone can be
// moved to another image after the image was judged.
func Pinned(ref string) bool {
	i := strings.LastIndexByte(ref, '@')
	if i < 0 {
		return false
	}
	_, err := v1.NewHash(ref[i+1:])
	return err == nil
}

// digestFindings is the reference.digest finding of a reference without a
// digest under a policy with spec.requireDigests, with the policy's
// action; none otherwise. It is never nil: results keep an empty list.
func digestFindings(spec *v1alpha1.SlimImagePolicySpec, ref string, action Action) []Finding {
	if spec == nil || !spec.RequireDigests || Pinned(ref) {
		return []Finding{}
	}
	r := ruleByID(RuleReferenceDigest)
	what := "no digest"
	if t, err := name.NewTag(ref); err == nil {
		what = fmt.Sprintf("tag %q, which can be moved after the check", Truncate(t.TagStr(), 64))
		if !strings.HasSuffix(ref, ":"+t.TagStr()) {
			what = "no tag and no digest (the kubelet pulls whatever latest names then)"
		}
	}
	return []Finding{{Rule: r.ID, Action: action, Message: r.Title + ": " + what, Remedy: r.Remedy}}
}
