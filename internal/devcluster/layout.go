package devcluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageFromSteps makes an OCI image for platform whose config history is
// steps, Dockerfile instructions as BuildKit records them, and whose
// environment is env. A metadata instruction (ENV, CMD, ENTRYPOINT,
// WORKDIR, LABEL, USER, EXPOSE) adds no layer; every other step adds a
// random layer of layerSize bytes.
func ImageFromSteps(platform v1.Platform, env []string, layerSize int64, steps ...string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	history := make([]v1.History, len(steps))
	for i, step := range steps {
		history[i] = v1.History{CreatedBy: step, Comment: "buildkit.dockerfile.v0", EmptyLayer: !addsLayer(step)}
		if history[i].EmptyLayer {
			continue
		}
		l, err := random.Layer(layerSize, types.OCILayer)
		if err != nil {
			return nil, fmt.Errorf("making the layer of %q: %w", step, err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, fmt.Errorf("appending the layer of %q: %w", step, err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.History, cfg.Config.Env = history, env
	cfg.OS, cfg.Architecture, cfg.Variant = platform.OS, platform.Architecture, platform.Variant
	return mutate.ConfigFile(img, cfg)
}

// addsLayer reports whether a Dockerfile step adds a layer: metadata
// instructions do not.
func addsLayer(step string) bool {
	instruction, _, _ := strings.Cut(step, " ")
	switch instruction {
	case "ENV", "CMD", "ENTRYPOINT", "WORKDIR", "LABEL", "USER", "EXPOSE":
		return false
	}
	return true
}

// PlatformIndex is an OCI image index of images, each entry carrying the
// platform its image's config names.
func PlatformIndex(images ...v1.Image) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, len(images))
	for i, img := range images {
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading the config of image %d: %w", i, err)
		}
		adds[i] = mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cfg.Platform()}}
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), nil
}

// LayoutRefName is the annotation that tags an entry of an OCI layout's
// index.json.
const LayoutRefName = "org.opencontainers.image.ref.name"

// WriteLayout writes an OCI image layout in dir holding images, each
// annotated with its tag (the map key; "" leaves it untagged), and then
// deletes their layer blobs: whoever reads the layout may need manifests
// and configs only.
func WriteLayout(dir string, images map[string]v1.Image) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("creating the layout: %w", err)
	}
	for tag, img := range images {
		var opts []layout.Option
		if tag != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{LayoutRefName: tag}))
		}
		if err := p.AppendImage(img, opts...); err != nil {
			return fmt.Errorf("writing image %q: %w", tag, err)
		}
		if err := removeLayerBlobs(dir, img); err != nil {
			return err
		}
	}
	return nil
}

// WriteIndexLayout writes an OCI image layout in dir holding idx, untagged,
// and its images without their layer blobs.
func WriteIndexLayout(dir string, idx v1.ImageIndex) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("creating the layout: %w", err)
	}
	if err := p.AppendIndex(idx); err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("reading the index: %w", err)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("reading image %s: %w", d.Digest, err)
		}
		if err := removeLayerBlobs(dir, img); err != nil {
			return err
		}
	}
	return nil
}

// removeLayerBlobs deletes img's layer blobs from the layout in dir; one
// already gone (shared with another image) is fine.
func removeLayerBlobs(dir string, img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("reading a manifest: %w", err)
	}
	for _, l := range m.Layers {
		err := os.Remove(filepath.Join(dir, "blobs", l.Digest.Algorithm, l.Digest.Hex))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing layer blob: %w", err)
		}
	}
	return nil
}
