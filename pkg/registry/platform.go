package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/pkg/image"
)

// NormalisePlatforms validates "os/arch[/variant]" strings, as a Request's
// Platforms, and returns them trimmed.
func NormalisePlatforms(ps []string) ([]string, error) {
	var out []string
	for _, p := range ps {
		parts := strings.Split(strings.TrimSpace(p), "/")
		if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
			return nil, fmt.Errorf("platform %q is not os/arch[/variant]", p)
		}
		out = append(out, strings.Join(parts, "/"))
	}
	return out, nil
}

// SelectPlatforms chooses which index entries to judge, for remote and
// local images alike: those matching the requested platforms (as
// NormalisePlatforms returns them; a missing variant matches any; each
// image once), or by default every linux image (every image when none is
// linux), at most max of them, with a note when more matched. Attestation
// manifests (unknown/unknown) and entries without a platform are never
// judged. Its errors carry a Reason (ReasonOf).
func SelectPlatforms(entries []v1.Descriptor, platforms []string, max int) ([]v1.Descriptor, []string, error) {
	var images []v1.Descriptor
	var available []string
	for _, d := range entries {
		if !d.MediaType.IsImage() || d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		images = append(images, d)
		available = append(available, platformOf(d.Platform).String())
	}
	var picked []v1.Descriptor
	if len(platforms) == 0 {
		for _, d := range images {
			if d.Platform.OS == "linux" {
				picked = append(picked, d)
			}
		}
		if len(picked) == 0 {
			picked = images
		}
		if len(picked) == 0 {
			return nil, nil, reasoned(ReasonNotFound, errors.New("the index lists no image manifests with a platform"))
		}
	}
	for _, p := range platforms {
		parts := strings.Split(p, "/")
		i := slices.IndexFunc(images, func(d v1.Descriptor) bool {
			return d.Platform.OS == parts[0] && d.Platform.Architecture == parts[1] &&
				(len(parts) < 3 || d.Platform.Variant == parts[2])
		})
		if i < 0 {
			return nil, nil, reasoned(ReasonNotFound, fmt.Errorf("no %s image in the index (platforms: %s)", p, strings.Join(available, ", ")))
		}
		if !slices.ContainsFunc(picked, func(d v1.Descriptor) bool { return d.Digest == images[i].Digest }) {
			picked = append(picked, images[i])
		}
	}
	var notes []string
	if len(picked) > max {
		notes = append(notes, fmt.Sprintf("%d platforms match; only the first %d were judged", len(picked), max))
		picked = picked[:max]
	}
	return picked, notes, nil
}

func platformOf(p *v1.Platform) image.Platform {
	return image.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}
