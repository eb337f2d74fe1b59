package image

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hash is a sha256 digest made of one repeated hex digit.
func hash(digit string) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(digit, 64)}
}

// manifest declares one layer per size, with digests sha256:1111..., 2222...
func manifest(sizes ...int64) *v1.Manifest {
	m := &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	for i, s := range sizes {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCILayer, Size: s, Digest: hash(string(rune('1' + i)))})
	}
	return m
}

// buildHistory is a base layer, an ENV, a COPY, a RUN and a CMD: three
// entries that add a layer.
var buildHistory = []v1.History{
	{CreatedBy: "FROM base", Comment: "base"},
	{CreatedBy: "ENV A=1", EmptyLayer: true},
	{CreatedBy: "COPY . .", Comment: "buildkit.dockerfile.v0"},
	{CreatedBy: "RUN go build -o /app ."},
	{CreatedBy: `CMD ["/app"]`, EmptyLayer: true},
}

func config(history []v1.History) *v1.ConfigFile {
	return &v1.ConfigFile{
		OS: "linux", Architecture: "arm64", Variant: "v8",
		History: history,
		Config: v1.Config{
			Env: []string{"PATH=/bin", "A=1"}, Labels: map[string]string{"team": "a"}, User: "65532",
			Entrypoint: []string{"/app"}, Cmd: []string{"--serve"}, WorkingDir: "/srv",
		},
	}
}

func TestFromPartsMapsHistoryToLayers(t *testing.T) {
	f, err := FromParts(manifest(100, 20, 3), config(buildHistory))
	if err != nil {
		t.Fatal(err)
	}
	want := &Facts{
		MediaType: string(types.OCIManifestSchema1),
		Platform:  Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		History: []HistoryEntry{
			{Index: 0, CreatedBy: "FROM base", Comment: "base", Layer: 0},
			{Index: 1, CreatedBy: "ENV A=1", EmptyLayer: true, Layer: NoLayer},
			{Index: 2, CreatedBy: "COPY . .", Comment: "buildkit.dockerfile.v0", Layer: 1},
			{Index: 3, CreatedBy: "RUN go build -o /app .", Layer: 2},
			{Index: 4, CreatedBy: `CMD ["/app"]`, EmptyLayer: true, Layer: NoLayer},
		},
		HistoryMapped: true,
		Env:           []string{"PATH=/bin", "A=1"},
		Labels:        map[string]string{"team": "a"},
		User:          "65532",
		Entrypoint:    []string{"/app"},
		Cmd:           []string{"--serve"},
		WorkingDir:    "/srv",
		Layers: []Layer{
			{Digest: hash("1").String(), MediaType: string(types.OCILayer), Size: 100, History: 0},
			{Digest: hash("2").String(), MediaType: string(types.OCILayer), Size: 20, History: 2},
			{Digest: hash("3").String(), MediaType: string(types.OCILayer), Size: 3, History: 3},
		},
		CompressedSize: 123,
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
}

// When the history does not add as many layers as the manifest has, no
// entry is paired with a layer: a guess would blame the wrong step.
func TestFromPartsLeavesUnmatchedHistoryUnmapped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sizes   []int64
		history []v1.History
	}{
		{name: "more layers than history entries adding one", sizes: []int64{1, 2, 3, 4}, history: buildHistory},
		{name: "fewer layers", sizes: []int64{1, 2}, history: buildHistory},
		{name: "squashed: one layer", sizes: []int64{10}, history: buildHistory},
		{name: "no history", sizes: []int64{1, 2, 3}},
		{name: "no layers, only empty entries", history: []v1.History{{CreatedBy: "ENV A=1", EmptyLayer: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FromParts(manifest(tc.sizes...), config(tc.history))
			if err != nil {
				t.Fatal(err)
			}
			if f.HistoryMapped {
				t.Error("HistoryMapped is true")
			}
			if len(f.History) != len(tc.history) || len(f.Layers) != len(tc.sizes) {
				t.Fatalf("%d history entries and %d layers, want %d and %d", len(f.History), len(f.Layers), len(tc.history), len(tc.sizes))
			}
			for _, h := range f.History {
				if h.Layer != NoLayer {
					t.Errorf("history %d paired with layer %d", h.Index, h.Layer)
				}
			}
			var total int64
			for i, l := range f.Layers {
				if l.History != NoLayer {
					t.Errorf("layer %d paired with history %d", i, l.History)
				}
				total += l.Size
			}
			if f.CompressedSize != total {
				t.Errorf("CompressedSize %d, want %d", f.CompressedSize, total)
			}
			for i := range f.History {
				if got := f.LayerSize(i); got != 0 {
					t.Errorf("LayerSize(%d) = %d without a mapping, want 0", i, got)
				}
			}
		})
	}
}

func TestFromPartsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       *v1.Manifest
		cfg     *v1.ConfigFile
		wantErr string
	}{
		{name: "no manifest", cfg: config(nil), wantErr: "no manifest"},
		{name: "no config", m: manifest(1), wantErr: ErrNoConfig.Error()},
		{name: "negative layer size", m: manifest(5, -1, 5), cfg: config(buildHistory), wantErr: "negative size"},
		{name: "layer sizes past int64", m: manifest(math.MaxInt64/2+1, math.MaxInt64/2+1, 5), cfg: config(buildHistory), wantErr: "sizes add up to more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FromParts(tc.m, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("FromParts = %+v, %v; want an error saying %q", f, err, tc.wantErr)
			}
			if f != nil {
				t.Errorf("facts %+v returned with the error", f)
			}
		})
	}
	if _, err := FromParts(manifest(1), nil); !errors.Is(err, ErrNoConfig) {
		t.Errorf("FromParts without a config = %v, want ErrNoConfig", err)
	}
}

func TestLayerSize(t *testing.T) {
	f, err := FromParts(manifest(100, 20, 3), config(buildHistory))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		index int
		want  int64
	}{
		{-1, 0},
		{0, 100},
		{1, 0}, // ENV adds no layer
		{2, 20},
		{3, 3},
		{4, 0},
		{5, 0}, // past the history
	} {
		if got := f.LayerSize(tc.index); got != tc.want {
			t.Errorf("LayerSize(%d) = %d, want %d", tc.index, got, tc.want)
		}
	}
	// A layer index the facts do not hold (facts edited by hand) is not
	// followed.
	f.History[3].Layer = 7
	if got := f.LayerSize(3); got != 0 {
		t.Errorf("LayerSize with a dangling layer index = %d, want 0", got)
	}
}

func TestPlatformString(t *testing.T) {
	for _, tc := range []struct {
		p    Platform
		want string
	}{
		{Platform{OS: "linux", Architecture: "amd64"}, "linux/amd64"},
		{Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "linux/arm/v7"},
		{Platform{OS: "windows", Architecture: "amd64"}, "windows/amd64"},
		{Platform{}, "/"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestFromImage(t *testing.T) {
	base, err := random.Image(64, 3)
	if err != nil {
		t.Fatal(err)
	}
	baseConfig, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf := config(buildHistory)
	cf.RootFS = baseConfig.RootFS
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}

	f, ferr := FromImage(img, "registry.example/team/app:1")
	digest, derr := img.Digest()
	m, merr := img.Manifest()
	if err := errors.Join(ferr, derr, merr); err != nil {
		t.Fatal(err)
	}
	if f.Reference != "registry.example/team/app:1" || f.Digest != digest.String() || f.IndexDigest != "" {
		t.Errorf("reference %q, digest %q, index digest %q; want the reference given and %s", f.Reference, f.Digest, f.IndexDigest, digest)
	}
	fromParts, err := FromParts(m, cf)
	if err != nil {
		t.Fatal(err)
	}
	fromParts.Reference, fromParts.Digest = f.Reference, f.Digest
	if diff := cmp.Diff(fromParts, f); diff != "" {
		t.Errorf("FromImage and FromParts differ (-parts +image):\n%s", diff)
	}
	if !f.HistoryMapped || len(f.Layers) != 3 || f.Platform.String() != "linux/arm64/v8" {
		t.Errorf("facts %+v: want three mapped layers on linux/arm64/v8", f)
	}
}

// failing is an image one of whose reads fails.
type failing struct {
	v1.Image
	manifest, config, digest error
}

func (f failing) Manifest() (*v1.Manifest, error) {
	if f.manifest != nil {
		return nil, f.manifest
	}
	return f.Image.Manifest()
}

func (f failing) ConfigFile() (*v1.ConfigFile, error) {
	if f.config != nil {
		return nil, f.config
	}
	return f.Image.ConfigFile()
}

func (f failing) Digest() (v1.Hash, error) {
	if f.digest != nil {
		return v1.Hash{}, f.digest
	}
	return f.Image.Digest()
}

func TestFromImageReadErrors(t *testing.T) {
	img, err := random.Image(16, 1)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		img  failing
		want string
	}{
		{name: "manifest", img: failing{Image: img, manifest: boom}, want: "reading manifest"},
		{name: "config", img: failing{Image: img, config: boom}, want: "reading config"},
		{name: "digest", img: failing{Image: img, digest: boom}, want: "manifest digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromImage(tc.img, "app:1")
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromImage = %v, want %q wrapping the read error", err, tc.want)
			}
		})
	}
}
