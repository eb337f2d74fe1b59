package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/registry"
)

// refNameAnnotation tags an entry of an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// splitLayoutRef splits "PATH[:TAG|@DIGEST]". As in skopeo the path
// cannot contain a colon.
func splitLayoutRef(s string) (dir, tag, digest string) {
	if i := strings.LastIndex(s, "@"); i >= 0 && strings.Contains(s[i:], ":") {
		return s[:i], "", s[i+1:]
	}
	dir, tag, found := strings.Cut(s, ":")
	if found && tag == "" {
		tag = ":" // marks "PATH:" with an empty tag
	}
	return dir, tag, ""
}

// layoutDir reads blobs of one OCI image layout folder.
type layoutDir struct{ dir string }

func inspectLayout(ref, spec string, platforms []string) (*registry.Inspection, error) {
	dir, tag, digest := splitLayoutRef(spec)
	if dir == "" || tag == ":" {
		return nil, registry.Reasoned(registry.ReasonBadReference, errors.New("want oci:PATH[:TAG|@DIGEST]"))
	}
	var want v1.Hash
	if digest != "" {
		h, err := v1.NewHash(digest)
		if err != nil {
			return nil, registry.Reasoned(registry.ReasonBadReference, fmt.Errorf("bad digest: %w", err))
		}
		want = h
	}
	raw, err := readCapped(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the layout's index.json: %w", err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing the layout's index.json: %w", err)
	}
	desc, err := pickLayoutEntry(idx, tag, want)
	if err != nil {
		return nil, err
	}
	l := layoutDir{dir: dir}
	insp := &registry.Inspection{Reference: ref, Digest: desc.Digest.String()}
	switch {
	case desc.MediaType.IsIndex():
		child, err := parseBlob(l, desc, "index", v1.ParseIndexManifest)
		if err != nil {
			return nil, err
		}
		wanted, err := registry.NormalisePlatforms(platforms)
		if err != nil {
			return nil, registry.Reasoned(registry.ReasonBadReference, err)
		}
		sel, err := registry.SelectPlatforms(child.Manifests, wanted, registry.DefaultMaxIndexEntries, registry.DefaultMaxPlatforms)
		if err != nil {
			return nil, err
		}
		read := make([]*image.Facts, 0, len(sel.Entries))
		for _, d := range sel.Entries {
			f, err := l.facts(ref, d)
			if err != nil {
				return nil, err
			}
			f.IndexDigest = desc.Digest.String()
			read = append(read, f)
		}
		if insp.Images, err = sel.Judged(read); err != nil {
			return nil, err
		}
	case desc.MediaType.IsImage():
		f, err := l.facts(ref, desc)
		if err != nil {
			return nil, err
		}
		insp.Images = append(insp.Images, f)
	default:
		return nil, fmt.Errorf("entry %s has media type %q, neither an image nor an index", desc.Digest, desc.MediaType)
	}
	return insp, nil
}

// pickLayoutEntry finds the index.json entry a tag or digest names, or the
// only entry when neither is given.
func pickLayoutEntry(idx *v1.IndexManifest, tag string, want v1.Hash) (v1.Descriptor, error) {
	switch {
	case want != (v1.Hash{}):
		for _, d := range idx.Manifests {
			if d.Digest == want {
				return d, nil
			}
		}
		return v1.Descriptor{}, registry.Reasoned(registry.ReasonNotFound, fmt.Errorf("no image with digest %s in the layout (%s)", want, listEntries(idx)))
	case tag != "":
		var found []v1.Descriptor
		for _, d := range idx.Manifests {
			if d.Annotations[refNameAnnotation] == tag {
				found = append(found, d)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			return v1.Descriptor{}, registry.Reasoned(registry.ReasonNotFound, fmt.Errorf("no image tagged %q in the layout (%s)", tag, listEntries(idx)))
		default:
			return v1.Descriptor{}, registry.Reasoned(registry.ReasonBadReference, fmt.Errorf("%d images are tagged %q; name one by digest as oci:PATH@DIGEST", len(found), tag))
		}
	}
	switch len(idx.Manifests) {
	case 1:
		return idx.Manifests[0], nil
	case 0:
		return v1.Descriptor{}, registry.Reasoned(registry.ReasonNotFound, errors.New("the layout's index.json lists no images"))
	default:
		return v1.Descriptor{}, registry.Reasoned(registry.ReasonBadReference, fmt.Errorf("the layout holds %d images: name one as oci:PATH:TAG or oci:PATH@DIGEST (%s)", len(idx.Manifests), listEntries(idx)))
	}
}

// listEntries describes an index's entries for an error message: tags,
// and the digests of untagged entries.
func listEntries(idx *v1.IndexManifest) string {
	var tags, untagged []string
	for _, d := range idx.Manifests {
		if t := d.Annotations[refNameAnnotation]; t != "" {
			tags = append(tags, t)
		} else {
			untagged = append(untagged, d.Digest.String())
		}
	}
	var parts []string
	if len(tags) > 0 {
		parts = append(parts, "tags: "+strings.Join(tags, ", "))
	}
	if len(untagged) > 0 {
		parts = append(parts, "untagged: "+strings.Join(untagged, ", "))
	}
	if len(parts) == 0 {
		return "it is empty"
	}
	return strings.Join(parts, "; ")
}

// blob reads a blob the descriptor names, checking its size and digest.
func (l layoutDir) blob(d v1.Descriptor) ([]byte, error) {
	if d.Size > maxDocument {
		return nil, registry.Reasoned(registry.ReasonTooLarge, fmt.Errorf("blob %s declares %d bytes, more than the %d allowed", d.Digest, d.Size, maxDocument))
	}
	if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 || strings.ContainsAny(d.Digest.Hex, `/\.`) {
		return nil, fmt.Errorf("unsupported digest %q", d.Digest)
	}
	b, err := readCapped(filepath.Join(l.dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d.Digest, err)
	}
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if got != d.Digest || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("blob %s does not match its descriptor (digest %s, %d bytes)", d.Digest, got, len(b))
	}
	return b, nil
}

// parseBlob reads the blob d names and parses it as a what (index,
// manifest).
func parseBlob[T any](l layoutDir, d v1.Descriptor, what string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	b, err := l.blob(d)
	if err != nil {
		return zero, err
	}
	v, err := parse(bytes.NewReader(b))
	if err != nil {
		return zero, fmt.Errorf("parsing %s %s: %w", what, d.Digest, err)
	}
	return v, nil
}

// facts reads one image's manifest and config; never its layers.
func (l layoutDir) facts(ref string, d v1.Descriptor) (*image.Facts, error) {
	m, err := parseBlob(l, d, "manifest", v1.ParseManifest)
	if err != nil {
		return nil, err
	}
	cb, err := l.blob(m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", d.Digest, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cb))
	if err != nil {
		return nil, fmt.Errorf("parsing config of %s: %w", d.Digest, err)
	}
	f, err := image.FromParts(m, cfg)
	if err != nil {
		return nil, err
	}
	f.Reference = ref
	f.Digest = d.Digest.String()
	return f, nil
}
