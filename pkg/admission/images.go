package admission

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"slimgate.dev/slimgate/pkg/policy"
)

// source says where in a Pod spec an image was written.
type source string

// Where images come from.
const (
	sourceContainer          source = "container"
	sourceInitContainer      source = "initContainer"
	sourceEphemeralContainer source = "ephemeralContainer"
	sourceVolume             source = "volume"
)

// Image is one image reference of a Pod spec, with where it was found.
type Image struct {
	// Reference is the image as written.
	Reference string
	// Container is the container's (or image volume's) name.
	Container string
	// Source is the kind of place it came from.
	Source source
	// Path is the field path, e.g. "spec.containers[0].image".
	Path string
}

// describe names the image's place for messages: `container "app"`. A
// name longer than a Kubernetes name may be (63) is cut.
func (i Image) describe() string {
	name := policy.Truncate(i.Container, 63)
	switch i.Source {
	case sourceInitContainer:
		return fmt.Sprintf("init container %q", name)
	case sourceEphemeralContainer:
		return fmt.Sprintf("ephemeral container %q", name)
	case sourceVolume:
		return fmt.Sprintf("image volume %q", name)
	default:
		return fmt.Sprintf("container %q", name)
	}
}

// Images lists every image of a Pod spec: init containers, containers,
// ephemeral containers and image volumes. prefix is the field path of the
// spec ("spec", "spec.template.spec", ...).
func Images(spec *corev1.PodSpec, prefix string) []Image {
	if spec == nil {
		return nil
	}
	var out []Image
	for i, c := range spec.InitContainers {
		out = append(out, Image{Reference: c.Image, Container: c.Name, Source: sourceInitContainer,
			Path: fmt.Sprintf("%s.initContainers[%d].image", prefix, i)})
	}
	for i, c := range spec.Containers {
		out = append(out, Image{Reference: c.Image, Container: c.Name, Source: sourceContainer,
			Path: fmt.Sprintf("%s.containers[%d].image", prefix, i)})
	}
	for i, c := range spec.EphemeralContainers {
		out = append(out, Image{Reference: c.Image, Container: c.Name, Source: sourceEphemeralContainer,
			Path: fmt.Sprintf("%s.ephemeralContainers[%d].image", prefix, i)})
	}
	for i, v := range spec.Volumes {
		if v.Image == nil {
			continue
		}
		out = append(out, Image{Reference: v.Image.Reference, Container: v.Name, Source: sourceVolume,
			Path: fmt.Sprintf("%s.volumes[%d].image.reference", prefix, i)})
	}
	return out
}

// newImages keeps the images of current that old did not have in the
// same kind of slot: on UPDATE only what the request adds is judged, so a
// label change is never blocked by an image admitted before a policy
// existed. A reference is old only where it was: an image that was an
// ephemeral container (which policies exclude by default) or an image
// volume is new when it moves into containers[], and the other way round.
func newImages(current, old []Image) []Image {
	type slot struct {
		source    source
		reference string
	}
	seen := make(map[slot]bool, len(old))
	for _, o := range old {
		seen[slot{o.Source, o.Reference}] = true
	}
	var out []Image
	for _, c := range current {
		if c.Reference != "" && !seen[slot{c.Source, c.Reference}] {
			out = append(out, c)
		}
	}
	return out
}
