package inspection

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/registry"
)

// push writes an image or index to the in-process registry at host.
func push(t *testing.T, host, repoTag string, v remote.Taggable) string {
	t.Helper()
	ref := host + "/" + repoTag
	if err := devcluster.Push(ref, v); err != nil {
		t.Fatal(err)
	}
	return ref
}

// stepsImage is an image with one small layer per step.
func stepsImage(t *testing.T, p v1.Platform, env []string, steps ...string) v1.Image {
	t.Helper()
	img, err := devcluster.ImageFromSteps(p, env, 64, steps...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestIndexesCannotHideThePlatformANodePulls: whatever an index holds
// before or around it, the image an amd64 node would pull is judged, or
// the index is a violation.
func TestIndexesCannotHideThePlatformANodePulls(t *testing.T) {
	host := serve(t, devcluster.NewRegistry())
	fat := stepsImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, []string{"GOLANG_VERSION=1.24.1", "PATH=/usr/local/go/bin:/usr/bin"},
		"ENV GOLANG_VERSION=1.24.1", "RUN curl -fsSL https://go.dev/dl/go1.24.1.linux-amd64.tar.gz | tar -C /usr/local -xz", "RUN go build -o /app .")
	slim := stepsImage(t, v1.Platform{OS: "linux", Architecture: "arm64"}, []string{"PATH=/usr/bin"}, "COPY app /app")
	attestation := stepsImage(t, v1.Platform{OS: "unknown", Architecture: "unknown"}, nil, "COPY sbom /sbom")
	index := func(adds ...mutate.IndexAddendum) v1.ImageIndex {
		return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	}
	placed := func(img v1.Image, os, arch string) mutate.IndexAddendum {
		return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}}}
	}
	var attestations []mutate.IndexAddendum
	for range 70 {
		attestations = append(attestations, placed(attestation, "unknown", "unknown"))
	}
	var linux []mutate.IndexAddendum
	for i := range 100 {
		linux = append(linux, placed(stepsImage(t, v1.Platform{OS: "linux", Architecture: fmt.Sprintf("arch%d", i)}, nil, "COPY app /app"), "linux", fmt.Sprintf("arch%d", i)))
	}
	for _, tc := range []struct {
		name string
		idx  v1.ImageIndex
		rule string // the finding that denies
	}{
		{"70 attestations before the amd64 image", index(append(attestations, placed(fat, "linux", "amd64"))...), "toolchain.go"},
		{"entries without a platform", index(mutate.IndexAddendum{Add: slim}, mutate.IndexAddendum{Add: fat}), "toolchain.go"},
		{"the amd64 image spelled Linux x86_64 before a slim one", index(placed(fat, "Linux", "x86_64"), placed(slim, "linux", "amd64")), "toolchain.go"},
		{"100 linux platforms", index(linux...), "inspection.invalid"},
		{"a nested index", index(placed(slim, "linux", "arm64"), mutate.IndexAddendum{Add: index(placed(fat, "linux", "amd64")),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}), "inspection.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := push(t, host, "idx:"+strings.ReplaceAll(tc.name, " ", "-"), tc.idx)
			req := registry.Request{Reference: ref, Egress: registry.EgressRules{Insecure: []string{host}}}
			rs := verdict(t, newRemote(t, registry.Options{}), req, enforceAllow())
			deny, rules := denied(rs)
			if !deny || !containsRule(rules, tc.rule) {
				t.Errorf("verdict deny=%v with rules %q, want a denial for %s (results %+v)", deny, rules, tc.rule, rs)
			}
		})
	}
}

func containsRule(rules []string, rule string) bool {
	for _, r := range rules {
		if r == rule {
			return true
		}
	}
	return false
}
