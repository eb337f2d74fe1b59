package devcluster

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var (
	linuxAMD64   = v1.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64v8 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

func stepsImage(t *testing.T, p v1.Platform, steps ...string) v1.Image {
	t.Helper()
	img, err := ImageFromSteps(p, []string{"A=1"}, 512, steps...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageFromSteps(t *testing.T) {
	steps := []string{"ADD rootfs.tar / # buildkit", "ENV A=1", `CMD ["sh"]`, "RUN /bin/sh -c make", "WORKDIR /app", "COPY . ."}
	img := stepsImage(t, linuxARM64v8, steps...)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var empty []bool
	for i, h := range cfg.History {
		if h.CreatedBy != steps[i] || h.Comment != "buildkit.dockerfile.v0" {
			t.Errorf("history %d = %+v, want step %q by BuildKit", i, h, steps[i])
		}
		empty = append(empty, h.EmptyLayer)
	}
	if diff := cmp.Diff([]bool{false, true, true, false, true, false}, empty); diff != "" {
		t.Errorf("empty layers (-want +got):\n%s", diff)
	}
	if got := cfg.Platform(); got == nil || !got.Equals(linuxARM64v8) || len(cfg.Config.Env) != 1 || cfg.Config.Env[0] != "A=1" {
		t.Errorf("platform %v env %q, want %v and [A=1]", got, cfg.Config.Env, linuxARM64v8)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || len(m.Layers) != 3 || m.Layers[0].MediaType != types.OCILayer || len(cfg.RootFS.DiffIDs) != 3 {
		t.Errorf("manifest %s with %d layers (%d diff IDs), want an OCI manifest with 3 OCI layers", m.MediaType, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
}

// checkBlobs checks that img's manifest and config are in the layout and
// its layers are not, and returns its digest.
func checkBlobs(t *testing.T, dir string, img v1.Image) v1.Hash {
	t.Helper()
	present := func(h v1.Hash) bool {
		_, err := os.Stat(filepath.Join(dir, "blobs", h.Algorithm, h.Hex))
		return err == nil
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !present(digest) || !present(m.Config.Digest) {
		t.Errorf("image %s: manifest or config blob missing", digest)
	}
	for _, l := range m.Layers {
		if present(l.Digest) {
			t.Errorf("image %s: layer blob %s is still there", digest, l.Digest)
		}
	}
	return digest
}

// layoutEntries reads the entries of the layout's index.json in dir.
func layoutEntries(t *testing.T, dir string) []v1.Descriptor {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err == nil {
		var m *v1.IndexManifest
		if m, err = idx.IndexManifest(); err == nil {
			return m.Manifests
		}
	}
	t.Fatalf("reading the layout: %v", err)
	return nil
}

func TestWriteLayout(t *testing.T) {
	tagged, untagged := stepsImage(t, linuxAMD64, "RUN a"), stepsImage(t, linuxAMD64, "RUN b", "RUN c")
	dir := t.TempDir()
	if err := WriteLayout(dir, map[string]v1.Image{"app": tagged, "": untagged}); err != nil {
		t.Fatal(err)
	}
	tags := map[string]v1.Hash{}
	for _, d := range layoutEntries(t, dir) {
		tags[d.Annotations[LayoutRefName]] = d.Digest
	}
	want := map[string]v1.Hash{"app": checkBlobs(t, dir, tagged), "": checkBlobs(t, dir, untagged)}
	if diff := cmp.Diff(want, tags); diff != "" {
		t.Errorf("index.json entries by tag (-want +got):\n%s", diff)
	}
}

func TestWriteIndexLayout(t *testing.T) {
	images := []v1.Image{stepsImage(t, linuxAMD64, "RUN a"), stepsImage(t, linuxARM64v8, "RUN a")}
	idx, err := PlatformIndex(images...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteIndexLayout(dir, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if top := layoutEntries(t, dir); len(top) != 1 || top[0].Digest != idxDigest || top[0].Annotations[LayoutRefName] != "" {
		t.Errorf("index.json lists %+v, want the untagged index %s alone", top, idxDigest)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for i, d := range im.Manifests {
		platforms = append(platforms, d.Platform.String())
		if digest := checkBlobs(t, dir, images[i]); d.Digest != digest {
			t.Errorf("entry %d is %s, want image %d (%s)", i, d.Digest, i, digest)
		}
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64/v8"}, platforms); diff != "" {
		t.Errorf("index platforms (-want +got):\n%s", diff)
	}
}
