package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"slimgate.dev/slimgate/pkg/image"
)

// Caps on what one index may make slimgate read, for remote and local
// images alike.
const (
	// DefaultMaxIndexEntries caps the entries an index may list, whatever
	// they are.
	DefaultMaxIndexEntries = 256
	// DefaultMaxPlatforms caps the images of one index that are read and
	// judged: those of the platforms asked for and those without a
	// platform. Real images list up to a dozen linux platforms.
	DefaultMaxPlatforms = 16
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

// Selection is what SelectPlatforms chose to read of an index, and how to
// tell which of the images read are judged (Judged).
type Selection struct {
	// Entries are the entries to read, each image once: those of the
	// platforms asked for, then those without a platform, which only
	// their config places.
	Entries []v1.Descriptor

	platforms []string // asked for; none: every linux platform
	available []string // the index's platforms, for messages
}

// SelectPlatforms chooses which entries of an index to read, so that the
// image a node of a platform asked for would pull is always among them.
// platforms are as NormalisePlatforms returns them (a missing variant
// matches any); none means every linux platform, or every platform when
// the index has no linux image at all. Platforms are compared as
// containerd compares them when it picks an entry for a node (matches).
//
//   - Attestations (unknown/unknown), entries for other platforms and
//     entries that are neither an image nor an index are skipped without
//     counting against maxPlatforms.
//   - An image entry without a platform (or with an empty one) is read:
//     runtimes place it by its config's platform, and so does Judged.
//   - An index entry a node could descend into is ReasonInvalid: slimgate
//     does not read nested indexes.
//   - More than maxEntries entries, or more than maxPlatforms images to
//     read, is ReasonTooLarge: what a node pulls is never cut off
//     unjudged.
//   - A platform asked for that no entry offers (and none without a
//     platform might) is ReasonNotFound.
func SelectPlatforms(entries []v1.Descriptor, platforms []string, maxEntries, maxPlatforms int) (Selection, error) {
	if err := checkIndexEntries(len(entries), maxEntries); err != nil {
		return Selection{}, err
	}
	s := Selection{platforms: platforms}
	var placed, unplaced []v1.Descriptor
	for _, d := range entries {
		switch {
		case d.MediaType.IsIndex() && (!isPlaced(d) || s.wants(platformOf(d.Platform), true)):
			return Selection{}, reasoned(ReasonInvalid, fmt.Errorf("index entry %s is itself an index (%s); slimgate does not read nested indexes", d.Digest, placeName(d)))
		case !d.MediaType.IsImage():
		case !isPlaced(d):
			unplaced = append(unplaced, d)
		case normalised(platformOf(d.Platform)).OS != "unknown":
			placed = append(placed, d)
			s.available = append(s.available, platformOf(d.Platform).String())
		}
	}
	add := func(d v1.Descriptor) {
		if !slices.ContainsFunc(s.Entries, func(e v1.Descriptor) bool { return e.Digest == d.Digest }) {
			s.Entries = append(s.Entries, d)
		}
	}
	for _, p := range platforms {
		found := false
		for _, d := range placed {
			if matches(platformOf(d.Platform), p) {
				add(d)
				found = true
			}
		}
		if !found && len(unplaced) == 0 {
			return Selection{}, reasoned(ReasonNotFound, fmt.Errorf("no %s image in the index (platforms: %s)", p, strings.Join(s.available, ", ")))
		}
	}
	if len(platforms) == 0 {
		anyLinux := len(unplaced) > 0 || slices.ContainsFunc(placed, func(d v1.Descriptor) bool { return isLinux(platformOf(d.Platform)) })
		for _, d := range placed {
			if isLinux(platformOf(d.Platform)) || !anyLinux {
				add(d)
			}
		}
	}
	for _, d := range unplaced {
		add(d)
	}
	switch {
	case len(s.Entries) == 0:
		return Selection{}, reasoned(ReasonNotFound, errors.New("the index lists no image manifests"))
	case len(s.Entries) > maxPlatforms:
		return Selection{}, reasoned(ReasonTooLarge, fmt.Errorf("the index has %d images to judge (%s), more than the %d allowed",
			len(s.Entries), s.describe(len(unplaced)), maxPlatforms))
	}
	return s, nil
}

// checkIndexEntries fails with ReasonTooLarge when an index lists more
// than limit entries.
func checkIndexEntries(n, limit int) error {
	if n > limit {
		return reasoned(ReasonTooLarge, fmt.Errorf("the index lists %d entries, more than the %d allowed", n, limit))
	}
	return nil
}

// Judged returns the images that are judged among those read for
// s.Entries (images[i] is the image of s.Entries[i]): every entry chosen
// for its platform, and every entry without one whose config names a
// platform asked for (by default any but unknown/unknown). It fails with
// ReasonNotFound when a platform asked for is none of theirs.
func (s Selection) Judged(images []*image.Facts) ([]*image.Facts, error) {
	var out []*image.Facts
	var judged []image.Platform
	for i, f := range images {
		d := s.Entries[i]
		p := f.Platform
		if isPlaced(d) {
			p = platformOf(d.Platform)
		} else if !s.wants(p, false) {
			continue
		}
		out = append(out, f)
		judged = append(judged, p)
	}
	for _, want := range s.platforms {
		if !slices.ContainsFunc(judged, func(p image.Platform) bool { return matches(p, want) }) {
			return nil, reasoned(ReasonNotFound, fmt.Errorf("no %s image in the index (platforms: %s)", want, strings.Join(s.availableAfter(images), ", ")))
		}
	}
	if len(out) == 0 {
		return nil, reasoned(ReasonNotFound, errors.New("the index lists no image for a platform that is judged"))
	}
	return out, nil
}

// wants reports whether an image of platform p is judged: one asked for,
// or by default any linux one (any but an attestation's for an image
// placed by its config, linuxOnly false).
func (s Selection) wants(p image.Platform, linuxOnly bool) bool {
	if len(s.platforms) == 0 {
		if linuxOnly {
			return isLinux(p)
		}
		return normalised(p).OS != "unknown"
	}
	return slices.ContainsFunc(s.platforms, func(want string) bool { return matches(p, want) })
}

// describe says what the images to read are, for the too-many message.
func (s Selection) describe(unplaced int) string {
	what := "every linux platform"
	if len(s.platforms) > 0 {
		what = strings.Join(s.platforms, ", ")
	}
	if unplaced > 0 {
		what += fmt.Sprintf("; %d without a platform", unplaced)
	}
	return what
}

// availableAfter lists the index's platforms once the images without one
// were read.
func (s Selection) availableAfter(images []*image.Facts) []string {
	out := slices.Clone(s.available)
	for i, f := range images {
		if !isPlaced(s.Entries[i]) {
			out = append(out, f.Platform.String())
		}
	}
	return out
}

// matches reports whether p is the platform want ("os/arch[/variant]"; a
// missing variant matches any), both normalised as containerd does
// (normalised); a p without an OS is a node's own, any.
func matches(p image.Platform, want string) bool {
	parts := strings.Split(want, "/")
	w := image.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		w.Variant = parts[2]
	}
	p, w = normalised(p), normalised(w)
	return (p.OS == "" || p.OS == w.OS) && p.Architecture == w.Architecture && (len(parts) < 3 || p.Variant == w.Variant)
}

// normalised is p as containerd compares platforms to pick what a node
// pulls: the OS lower-cased, architecture aliases and default variants
// resolved (x86_64 is amd64, aarch64 arm64, arm arm/v7). An index entry's
// platform is the author's to spell, so any spelling containerd accepts
// must be judged. A missing OS stays missing (containerd takes the
// node's).
func normalised(p image.Platform) image.Platform {
	n := platforms.Normalize(specs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
	if p.OS == "" {
		n.OS = ""
	}
	return image.Platform{OS: n.OS, Architecture: n.Architecture, Variant: n.Variant}
}

// isLinux reports whether a linux node may pull an image of platform p.
func isLinux(p image.Platform) bool {
	os := normalised(p).OS
	return os == "linux" || os == ""
}

// isPlaced reports whether an index entry names its platform, as
// containerd reads it: an architecture (a missing OS is the node's).
// Runtimes place the others by their config.
func isPlaced(d v1.Descriptor) bool {
	return d.Platform != nil && d.Platform.Architecture != ""
}

// placeName names an entry's platform for a message.
func placeName(d v1.Descriptor) string {
	if !isPlaced(d) {
		return "no platform"
	}
	return platformOf(d.Platform).String()
}

func platformOf(p *v1.Platform) image.Platform {
	if p == nil {
		return image.Platform{}
	}
	return image.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}
