package local

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/registry"
)

// testImage builds an image for platform whose history is the given
// Dockerfile steps (see devcluster.ImageFromSteps).
func testImage(t *testing.T, platform v1.Platform, steps ...string) v1.Image {
	t.Helper()
	img, err := devcluster.ImageFromSteps(platform, []string{"PATH=/usr/bin"}, 2048, steps...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// inspect inspects ref for platforms. With a reason it wants the
// failure instead: an InspectionError of ref for that reason whose message
// mentions each of words; it then returns nil.
func inspect(t *testing.T, ref string, platforms []string, reason registry.Reason, words ...string) *registry.Inspection {
	t.Helper()
	got, err := Inspect(ref, platforms)
	if reason == "" {
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		return got
	}
	ie, ok := registry.AsInspectionError(err)
	if !ok {
		t.Fatalf("error %v, want an *InspectionError", err)
	}
	if ie.Reason != reason || ie.Reference != ref {
		t.Errorf("reason %s reference %q, want %s %q (error: %v)", ie.Reason, ie.Reference, reason, ref, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	return nil
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestInspectLayoutWithoutLayerBlobs(t *testing.T) {
	img := testImage(t, amd64, "ADD alpine-minirootfs.tar.gz /", "ENV GOLANG_VERSION=1.22.5", "RUN /bin/sh -c go build -o /app .")
	dir := t.TempDir()
	if err := devcluster.WriteLayout(dir, map[string]v1.Image{"": img}); err != nil {
		t.Fatal(err)
	}
	ref := "oci:" + dir
	facts, err := image.FromImage(img, ref)
	if err != nil {
		t.Fatal(err)
	}
	got := inspect(t, ref, nil, "")
	want := &registry.Inspection{Reference: ref, Digest: digestOf(t, img), Images: []*image.Facts{facts}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("inspection (-want +got):\n%s", diff)
	}
	if !got.Images[0].HistoryMapped || len(got.Images[0].Layers) != 2 {
		t.Errorf("history mapped %v with %d layers, want true with 2", got.Images[0].HistoryMapped, len(got.Images[0].Layers))
	}
}

func TestInspectLayoutSelection(t *testing.T) {
	app := testImage(t, amd64, "COPY /app/server /server # buildkit")
	sdk := testImage(t, amd64, "ENV GOLANG_VERSION=1.22.5", "RUN /bin/sh -c go build -o /app .")
	untagged := testImage(t, amd64, "COPY hello /hello # buildkit")
	dir := t.TempDir()
	if err := devcluster.WriteLayout(dir, map[string]v1.Image{"app": app, "sdk": sdk, "": untagged}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		ref        string
		wantDigest string
		wantReason registry.Reason
		wantInErr  []string
	}{
		{ref: "oci:" + dir + ":app", wantDigest: digestOf(t, app)},
		{ref: "oci:" + dir + ":sdk", wantDigest: digestOf(t, sdk)},
		{ref: "oci:" + dir + "@" + digestOf(t, untagged), wantDigest: digestOf(t, untagged)},
		{ref: "oci:" + dir, wantReason: registry.ReasonBadReference, wantInErr: []string{"3 images", "tags: ", "app", "sdk", "untagged: " + digestOf(t, untagged)}},
		{ref: "oci:" + dir + ":nope", wantReason: registry.ReasonNotFound, wantInErr: []string{`no image tagged "nope"`, "app", "sdk"}},
		{ref: "oci:" + dir + "@sha256:" + strings.Repeat("0", 64), wantReason: registry.ReasonNotFound},
		{ref: "oci:" + dir + "@sha256:abc", wantReason: registry.ReasonBadReference},
		{ref: "oci:" + dir + ":", wantReason: registry.ReasonBadReference},
		{ref: "oci:", wantReason: registry.ReasonBadReference},
		{ref: "oci:" + filepath.Join(dir, "missing"), wantReason: registry.ReasonNotFound},
		{ref: "tar:" + dir, wantReason: registry.ReasonBadReference},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			got := inspect(t, tc.ref, nil, tc.wantReason, tc.wantInErr...)
			if got == nil {
				return
			}
			if len(got.Images) != 1 || got.Images[0].Digest != tc.wantDigest || got.Digest != tc.wantDigest {
				t.Errorf("got %d images, digest %s, want one with %s", len(got.Images), got.Digest, tc.wantDigest)
			}
		})
	}
}

func TestInspectLayoutMultiPlatform(t *testing.T) {
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx, err := devcluster.PlatformIndex(
		testImage(t, amd64, "COPY /app/server /server # buildkit"),
		testImage(t, arm64, "COPY /app/server /server # buildkit"),
		testImage(t, v1.Platform{OS: "unknown", Architecture: "unknown"}, "attestation"),
	)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := devcluster.WriteIndexLayout(dir, idx); err != nil {
		t.Fatal(err)
	}
	ref := "oci:" + dir
	indexDigest := digestOf(t, idx)

	tests := []struct {
		platforms  []string
		want       []string
		wantReason registry.Reason
	}{
		{platforms: nil, want: []string{"linux/amd64", "linux/arm64/v8"}},
		{platforms: []string{"linux/arm64"}, want: []string{"linux/arm64/v8"}},
		{platforms: []string{"linux/arm64/v8", "linux/amd64"}, want: []string{"linux/arm64/v8", "linux/amd64"}},
		// Two spellings of one platform judge its image once.
		{platforms: []string{"linux/arm64", "linux/arm64/v8"}, want: []string{"linux/arm64/v8"}},
		{platforms: []string{"windows/amd64"}, wantReason: registry.ReasonNotFound},
		{platforms: []string{"linux"}, wantReason: registry.ReasonBadReference},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.platforms, ","), func(t *testing.T) {
			got := inspect(t, ref, tc.platforms, tc.wantReason)
			if got == nil {
				return
			}
			if got.Digest != indexDigest {
				t.Errorf("digest %s, want the index digest %s", got.Digest, indexDigest)
			}
			var platforms []string
			for _, f := range got.Images {
				platforms = append(platforms, f.Platform.String())
				if f.IndexDigest != indexDigest {
					t.Errorf("%s: index digest %s, want %s", f.Platform, f.IndexDigest, indexDigest)
				}
			}
			if diff := cmp.Diff(tc.want, platforms); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
		})
	}
}

// writeBlob stores b in the layout and returns its descriptor.
func writeBlob(t *testing.T, p layout.Path, mt types.MediaType, b []byte) v1.Descriptor {
	t.Helper()
	h, n, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: n}
}

func TestInspectLayoutRejectsBadBlobs(t *testing.T) {
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeBlob(t, p, types.OCIConfigJSON, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`))
	manifest := func(config v1.Descriptor) []byte {
		b, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: config})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	huge := cfg
	huge.Size = maxDocument + 1
	lying := cfg
	lying.Size--
	for tag, m := range map[string]v1.Descriptor{
		"ok":     writeBlob(t, p, types.OCIManifestSchema1, manifest(cfg)),
		"huge":   writeBlob(t, p, types.OCIManifestSchema1, manifest(huge)),
		"lying":  writeBlob(t, p, types.OCIManifestSchema1, manifest(lying)),
		"absent": {MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Size: 10},
	} {
		m.Annotations = map[string]string{refNameAnnotation: tag}
		if err := p.AppendDescriptor(m); err != nil {
			t.Fatal(err)
		}
	}
	tests := map[string]registry.Reason{"ok": "", "huge": registry.ReasonTooLarge, "lying": registry.ReasonInvalid, "absent": registry.ReasonNotFound}
	for tag, want := range tests {
		t.Run(tag, func(t *testing.T) {
			insp := inspect(t, "oci:"+dir+":"+tag, nil, want)
			if want == "" && (len(insp.Images) != 1 || insp.Images[0].Platform != (image.Platform{OS: "linux", Architecture: "amd64"})) {
				t.Fatalf("got %+v; want one linux/amd64 image", insp)
			}
		})
	}
}

func TestInspectDockerArchive(t *testing.T) {
	app := testImage(t, amd64, "ADD alpine-minirootfs.tar.gz /", "COPY /app/server /server # buildkit")
	sdk := testImage(t, amd64, "ENV GOLANG_VERSION=1.22.5", "RUN /bin/sh -c go build -o /app .")
	dir := t.TempDir()
	single := filepath.Join(dir, "single.tar")
	appTag, err := name.NewTag("example.com/app:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(single, appTag, app); err != nil {
		t.Fatal(err)
	}
	multi := filepath.Join(dir, "multi.tar")
	sdkTag, err := name.NewTag("golang-app:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.MultiRefWriteToFile(multi, map[name.Reference]v1.Image{appTag: app, sdkTag: sdk}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		ref        string
		want       v1.Image
		wantReason registry.Reason
		wantInErr  []string
	}{
		{ref: "docker-archive:" + single, want: app},
		{ref: "docker-archive:" + single + ":example.com/app:1.0", want: app},
		{ref: "docker-archive:" + multi + ":golang-app:1.0", want: sdk},
		{ref: "docker-archive:" + multi + ":docker.io/library/golang-app:1.0", want: sdk},
		{ref: "docker-archive:" + multi + ":@0", want: app},
		{ref: "docker-archive:" + multi, wantReason: registry.ReasonBadReference, wantInErr: []string{"2 images", "example.com/app:1.0", "golang-app:1.0"}},
		{ref: "docker-archive:" + multi + ":other:2", wantReason: registry.ReasonNotFound},
		{ref: "docker-archive:" + multi + ":@2", wantReason: registry.ReasonBadReference},
		{ref: "docker-archive:" + filepath.Join(dir, "missing.tar"), wantReason: registry.ReasonNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			got := inspect(t, tc.ref, nil, tc.wantReason, tc.wantInErr...)
			if got == nil {
				return
			}
			// ggcr writes gzip layers named by their digest, so the facts
			// match a registry's, except for the digest: an archive has no
			// manifest, and the image ID stands in.
			want, err := image.FromImage(tc.want, tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			cfgName, err := tc.want.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			want.Digest = cfgName.String()
			want.MediaType = string(types.DockerManifestSchema2)
			for i := range want.Layers {
				want.Layers[i].MediaType = string(types.DockerLayer)
			}
			if diff := cmp.Diff([]*image.Facts{want}, got.Images); diff != "" {
				t.Errorf("facts (-want +got):\n%s", diff)
			}
			if got.Digest != cfgName.String() || len(got.Notes) != 1 {
				t.Errorf("digest %s notes %q, want %s and one note", got.Digest, got.Notes, cfgName)
			}
		})
	}
}

// TestInspectDockerArchiveLegacy reads the classic docker save layout:
// uncompressed "<id>/layer.tar" files, a shared layer as a symbolic link,
// manifest.json written last.
func TestInspectDockerArchiveLegacy(t *testing.T) {
	layerA := bytes.Repeat([]byte("a"), 3000)
	cfg := []byte(`{"architecture":"arm64","os":"linux","config":{"Env":["GOLANG_VERSION=1.22.5"]},` +
		`"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("1", 64) + `","sha256:` + strings.Repeat("2", 64) + `"]},` +
		`"history":[{"created_by":"ADD rootfs.tar /"},{"created_by":"ENV GOLANG_VERSION=1.22.5","empty_layer":true},{"created_by":"RUN /bin/sh -c go build -o /app ."}]}`)
	manifest := []byte(`[{"Config":"cfg.json","RepoTags":["golang-app:1.0"],"Layers":["a/layer.tar","./b/layer.tar"]}]`)
	file := filepath.Join(t.TempDir(), "legacy.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "a/layer.tar", Typeflag: tar.TypeReg, Mode: 0o644}, layerA)
	add(&tar.Header{Name: "b/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../a/layer.tar"}, nil)
	add(&tar.Header{Name: "cfg.json", Typeflag: tar.TypeReg, Mode: 0o644}, cfg)
	add(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644}, manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	got, err := Inspect("docker-archive:"+file, nil)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	f := got.Images[0]
	if f.CompressedSize != 6000 || len(f.Layers) != 2 || !f.HistoryMapped || f.Platform.String() != "linux/arm64" {
		t.Errorf("size %d, %d layers, mapped %v, platform %s; want 6000, 2, true, linux/arm64", f.CompressedSize, len(f.Layers), f.HistoryMapped, f.Platform)
	}
	if f.Layers[1].Digest != "sha256:"+strings.Repeat("2", 64) || f.Layers[1].MediaType != string(types.DockerUncompressedLayer) {
		t.Errorf("layer 1 = %+v, want the diff id and the uncompressed media type", f.Layers[1])
	}
	if len(got.Notes) != 2 || !strings.Contains(got.Notes[1], "uncompressed") {
		t.Errorf("notes %q, want a note that sizes are uncompressed", got.Notes)
	}
}

// TestInspectLayoutIndexRules: a layout's index follows the rules of a
// registry's (registry.SelectPlatforms): attestations before the image do
// not hide it, entries without a platform are placed by their config, and
// too many platforms or a nested index are the image's fault.
func TestInspectLayoutIndexRules(t *testing.T) {
	fat := testImage(t, amd64, "ENV GOLANG_VERSION=1.22.5", "RUN /bin/sh -c go build -o /app .")
	slim := testImage(t, v1.Platform{OS: "linux", Architecture: "arm64"}, "COPY /app/server /server # buildkit")
	attestation := testImage(t, v1.Platform{OS: "unknown", Architecture: "unknown"}, "attestation")
	index := func(adds ...mutate.IndexAddendum) v1.ImageIndex {
		return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	}
	placed := func(img v1.Image, p string) mutate.IndexAddendum {
		os, arch, _ := strings.Cut(p, "/")
		return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}}}
	}
	var attestations, linux []mutate.IndexAddendum
	for range 70 {
		attestations = append(attestations, placed(attestation, "unknown/unknown"))
	}
	for i := range 20 {
		linux = append(linux, placed(testImage(t, v1.Platform{OS: "linux", Architecture: fmt.Sprint("arch", i)}, "COPY a /a"), fmt.Sprint("linux/arch", i)))
	}
	for _, tc := range []struct {
		name   string
		idx    v1.ImageIndex
		want   []string // platforms judged
		reason registry.Reason
		words  []string
	}{
		{name: "attestations first", idx: index(append(attestations, placed(fat, "linux/amd64"))...), want: []string{"linux/amd64"}},
		{name: "no platforms", idx: index(mutate.IndexAddendum{Add: slim}, mutate.IndexAddendum{Add: fat}), want: []string{"linux/arm64", "linux/amd64"}},
		{name: "too many platforms", idx: index(linux...), reason: registry.ReasonTooLarge, words: []string{"20 images to judge", "16 allowed"}},
		{name: "nested", idx: index(placed(slim, "linux/arm64"), mutate.IndexAddendum{Add: index(placed(fat, "linux/amd64")),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}), reason: registry.ReasonInvalid, words: []string{"nested indexes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := layout.Write(dir, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AppendIndex(tc.idx); err != nil {
				t.Fatal(err)
			}
			got := inspect(t, "oci:"+dir, nil, tc.reason, tc.words...)
			if got == nil {
				return
			}
			var platforms []string
			for _, f := range got.Images {
				platforms = append(platforms, f.Platform.String())
			}
			if diff := cmp.Diff(tc.want, platforms); diff != "" {
				t.Errorf("platforms judged (-want +got):\n%s", diff)
			}
		})
	}
}
