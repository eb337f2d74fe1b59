package registry

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/pkg/image"
)

// entry is an index entry: "os/arch[/variant]", "" for none, "{}" for an
// empty platform; the digest is derived from id.
func entry(id, platform string, mt types.MediaType) v1.Descriptor {
	d := v1.Descriptor{MediaType: mt, Size: 100, Digest: hashOf([]byte(id))}
	d.Annotations = map[string]string{"id": id}
	switch platform {
	case "":
	case "{}":
		d.Platform = &v1.Platform{}
	default:
		p := parsePlatform(platform)
		d.Platform = &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	}
	return d
}

func parsePlatform(s string) image.Platform {
	parts := strings.Split(s+"//", "/")
	return image.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
}

func img(id, platform string) v1.Descriptor { return entry(id, platform, types.OCIManifestSchema1) }

func TestSelectPlatforms(t *testing.T) {
	many := func(n int, platform string) []v1.Descriptor {
		var out []v1.Descriptor
		for i := range n {
			out = append(out, img(fmt.Sprintf("%s-%03d", platform, i), platform))
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		entries   []v1.Descriptor
		platforms []string
		configs   map[string]string // config platform by id, for entries read
		want      []string          // ids of the entries judged
		reason    Reason            // of SelectPlatforms or Judged
		message   string
	}{
		{name: "attestations before the image do not count", entries: append(many(70, "unknown/unknown"), img("amd", "linux/amd64")), want: []string{"amd"}},
		{name: "too many entries", entries: append(many(DefaultMaxIndexEntries, "unknown/unknown"), img("amd", "linux/amd64")), reason: ReasonTooLarge, message: "the index lists 257 entries, more than the 256 allowed"},
		{name: "too many linux images", entries: many(DefaultMaxPlatforms+1, "linux/amd64"), reason: ReasonTooLarge, message: "the index has 17 images to judge (every linux platform), more than the 16 allowed"},
		{name: "as many linux images as allowed", entries: append(many(DefaultMaxPlatforms, "linux/amd64"), many(40, "windows/amd64")...), want: idsOf(many(DefaultMaxPlatforms, "linux/amd64"))},
		{name: "entries without a platform are placed by their config", entries: []v1.Descriptor{img("a", ""), img("b", "{}")},
			configs: map[string]string{"a": "linux/amd64", "b": "linux/arm64"}, want: []string{"a", "b"}},
		{name: "an unplaced attestation is not judged", entries: []v1.Descriptor{img("amd", "linux/amd64"), img("att", "")},
			configs: map[string]string{"amd": "linux/amd64", "att": "unknown/unknown"}, want: []string{"amd"}},
		{name: "unplaced entries count against the cap", entries: append(many(DefaultMaxPlatforms, "linux/amd64"), img("x", "")), reason: ReasonTooLarge, message: "1 without a platform"},
		{name: "an unplaced entry for a platform asked for", entries: []v1.Descriptor{img("amd", "linux/amd64"), img("a", ""), img("b", "")}, platforms: []string{"linux/arm64"},
			configs: map[string]string{"a": "linux/arm64", "b": "linux/s390x"}, want: []string{"a"}},
		{name: "an unplaced entry is not the platform asked for", entries: []v1.Descriptor{img("amd", "linux/amd64"), img("a", "")}, platforms: []string{"linux/arm64"},
			configs: map[string]string{"a": "linux/s390x"}, reason: ReasonNotFound, message: "no linux/arm64 image in the index (platforms: linux/amd64, linux/s390x)"},
		{name: "a platform nobody offers", entries: []v1.Descriptor{img("amd", "linux/amd64")}, platforms: []string{"linux/arm64"}, reason: ReasonNotFound, message: "no linux/arm64 image in the index (platforms: linux/amd64)"},
		{name: "every variant of the platform asked for", entries: []v1.Descriptor{img("v7", "linux/arm/v7"), img("v8", "linux/arm64/v8"), img("bare", "linux/arm64")}, platforms: []string{"linux/arm64"}, want: []string{"v8", "bare"}},
		{name: "platforms asked for in their order", entries: []v1.Descriptor{img("amd", "linux/amd64"), img("win", "windows/amd64")}, platforms: []string{"windows/amd64", "linux/amd64"}, want: []string{"win", "amd"}},
		{name: "other platforms are skipped", entries: []v1.Descriptor{img("win", "windows/amd64"), img("amd", "linux/amd64")}, want: []string{"amd"}},
		{name: "a windows-only index", entries: []v1.Descriptor{img("w1", "windows/amd64"), img("w2", "windows/arm64")}, want: []string{"w1", "w2"}},
		{name: "each image once", entries: []v1.Descriptor{img("amd", "linux/amd64"), img("amd", "linux/amd64")}, want: []string{"amd"}},
		{name: "non-image entries are skipped", entries: []v1.Descriptor{entry("sig", "", "application/vnd.example.signature+json"), img("amd", "linux/amd64")}, want: []string{"amd"}},
		{name: "a nested index for linux", entries: []v1.Descriptor{img("arm", "linux/arm64"), entry("idx", "linux/amd64", types.OCIImageIndex)}, reason: ReasonInvalid, message: "is itself an index (linux/amd64)"},
		{name: "a nested index without a platform", entries: []v1.Descriptor{img("arm", "linux/arm64"), entry("idx", "", types.DockerManifestList)}, reason: ReasonInvalid, message: "is itself an index (no platform)"},
		{name: "a nested index for another platform", entries: []v1.Descriptor{img("arm", "linux/arm64"), entry("idx", "windows/amd64", types.OCIImageIndex)}, want: []string{"arm"}},
		{name: "nothing to judge", entries: many(3, "unknown/unknown"), reason: ReasonNotFound, message: "the index lists no image manifests"},
		// containerd matches an index entry's platform after normalising it
		// (case, architecture aliases, arm variants; a missing OS is the
		// node's): whatever it would pull on the node is judged.
		{name: "a linux image spelled otherwise", entries: []v1.Descriptor{img("fat", "Linux/AMD64"), img("slim", "linux/amd64")}, want: []string{"fat", "slim"}},
		{name: "an architecture alias of the platform asked for", entries: []v1.Descriptor{img("fat", "linux/x86_64"), img("slim", "linux/amd64"), img("arm", "linux/aarch64")},
			platforms: []string{"linux/amd64", "linux/arm64/v8"}, want: []string{"fat", "slim", "arm"}},
		{name: "an arm image without its default variant", entries: []v1.Descriptor{img("fat", "linux/arm"), img("slim", "linux/arm/v7")}, platforms: []string{"linux/arm/v7"}, want: []string{"fat", "slim"}},
		{name: "an entry without an OS is placed by its architecture", entries: []v1.Descriptor{img("slim", "linux/amd64"), img("fat", "/amd64")},
			configs: map[string]string{"fat": "unknown/unknown"}, want: []string{"slim", "fat"}},
		{name: "an entry without an OS for the platform asked for", entries: []v1.Descriptor{img("slim", "linux/amd64"), img("fat", "/amd64")}, platforms: []string{"linux/amd64"},
			configs: map[string]string{"fat": "linux/arm64"}, want: []string{"slim", "fat"}},
		{name: "a nested index for linux spelled otherwise", entries: []v1.Descriptor{img("arm", "linux/arm64"), entry("idx", "LINUX/x86_64", types.OCIImageIndex)}, reason: ReasonInvalid, message: "is itself an index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := SelectPlatforms(tc.entries, tc.platforms, DefaultMaxIndexEntries, DefaultMaxPlatforms)
			var judged []*image.Facts
			if err == nil {
				var images []*image.Facts
				for _, d := range sel.Entries {
					p := tc.configs[d.Annotations["id"]]
					if p == "" && d.Platform != nil {
						p = platformOf(d.Platform).String()
					}
					images = append(images, &image.Facts{Digest: d.Annotations["id"], Platform: parsePlatform(p)})
				}
				judged, err = sel.Judged(images)
			}
			if tc.reason != "" {
				if r, _ := ReasonOf(err); r != tc.reason || !strings.Contains(err.Error(), tc.message) {
					t.Fatalf("err = %v (%s), want %s saying %q", err, r, tc.reason, tc.message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range judged {
				got = append(got, f.Digest)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("judged (-want +got):\n%s", diff)
			}
		})
	}
}

func idsOf(ds []v1.Descriptor) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Annotations["id"])
	}
	return out
}
