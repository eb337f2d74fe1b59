package admission

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// selects reports whether the policy's namespaceSelector matches the
// namespace labels. An absent or empty selector matches everything; an
// invalid one matches nothing (the status reconciler reports it).
func selects(p *v1alpha1.SlimImagePolicy, nsLabels map[string]string) bool {
	if p.Spec.NamespaceSelector == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(nsLabels))
}

// excluded reports whether the policy leaves this image alone: ephemeral
// containers (unless exclude.ephemeralContainers is false) and references
// matching an exclude.images glob in any of their spellings (as written or
// normalised; the handler passes its memo of func spellings).
func excluded(p *v1alpha1.SlimImagePolicy, img Image, spellings func(string) []string) bool {
	if img.Source == sourceEphemeralContainer {
		e := p.Spec.Exclude.EphemeralContainers
		if e == nil || *e {
			return true
		}
	}
	if len(p.Spec.Exclude.Images) == 0 {
		return false
	}
	forms := spellings(img.Reference)
	for _, pattern := range p.Spec.Exclude.Images {
		for _, f := range forms {
			if Glob(pattern, f) {
				return true
			}
		}
	}
	return false
}

// spellings returns a reference as written and as normalised
// ("golang:1" -> "index.docker.io/library/golang:1", "docker.io/library/golang:1").
func spellings(ref string) []string {
	out := []string{ref}
	r, err := name.ParseReference(ref)
	if err != nil {
		return out
	}
	full := r.Name()
	out = append(out, full)
	if rest, ok := strings.CutPrefix(full, name.DefaultRegistry+"/"); ok {
		out = append(out, "docker.io/"+rest)
	}
	return out
}

// Glob matches s against pattern, where '*' matches any run of characters
// (slashes included) and '?' any single character.
func Glob(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if Glob(pattern, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
		}
		pattern, s = pattern[1:], s[1:]
	}
	return s == ""
}
