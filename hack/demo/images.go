package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/pkg/image"
)

// fixtureDir holds the real image configs the samples start from.
const fixtureDir = "pkg/policy/testdata/images"

// sample is one image pushed to the demo registry: the real config of an
// official base image with an application's build steps appended.
type sample struct {
	// repo and tag name it in the demo registry.
	repo, tag string
	// fixture is the base image's file in fixtureDir; base names it.
	fixture, base string
	// estimated are the base layers' compressed sizes when the fixture
	// records none (a real config without its manifest).
	estimated []int64
	// steps are the Dockerfile instructions after FROM; a step with size 0
	// adds no layer.
	steps []step
	// cmd, when set, becomes the config's Cmd (and a CMD history entry).
	cmd []string
	// bloated says the default policy must refuse it: a smoke-test
	// expectation, checked against what pkg/policy finds.
	bloated bool
}

// step is one build instruction as BuildKit records it in the history.
type step struct {
	createdBy string
	size      int64
}

// samples are the pairs the demo contrasts: the same application built in
// one stage on an SDK image, and built elsewhere and copied onto a runtime.
func samples() []sample {
	return []sample{
		{repo: "demo/go-api", tag: "single-stage", fixture: "golang-1.24.4-bookworm", base: "golang:1.24.4-bookworm", bloated: true,
			steps: []step{{"COPY . . # buildkit", 1_240_000}, {"RUN /bin/sh -c go build -o /app . # buildkit", 58_300_000}},
			cmd:   []string{"/app"}},
		{repo: "demo/go-api", tag: "multi-stage", fixture: "distroless-static-debian12", base: "gcr.io/distroless/static-debian12",
			estimated: []int64{2_000_000},
			steps:     []step{{"COPY /out/app /app # buildkit", 7_900_000}},
			cmd:       []string{"/app"}},
		{repo: "demo/orders", tag: "maven", fixture: "maven-3-eclipse-temurin-26", base: "maven:3-eclipse-temurin-26 (JDK)", bloated: true,
			steps: []step{{"WORKDIR /build", 93}, {"COPY . . # buildkit", 310_000}, {"RUN /bin/sh -c mvn -B package -DskipTests # buildkit", 96_400_000}},
			cmd:   []string{"java", "-jar", "target/orders.jar"}},
		{repo: "demo/orders", tag: "jre", fixture: "distroless-java17", base: "gcr.io/distroless/java17 (JRE)",
			steps: []step{{"COPY /build/target/orders.jar /app/orders.jar # buildkit", 21_700_000}},
			cmd:   []string{"/app/orders.jar"}},
		{repo: "demo/web", tag: "node-build", fixture: "node-26.5.0", base: "node:26.5.0", bloated: true,
			steps: []step{{"WORKDIR /app", 93}, {"COPY . . # buildkit", 920_000}, {"RUN /bin/sh -c npm ci && npm run build # buildkit", 118_000_000}},
			cmd:   []string{"npx", "serve", "-s", "dist"}},
		{repo: "demo/web", tag: "nginx", fixture: "nginx-1.17.0", base: "nginx:1.17.0",
			estimated: []int64{22_500_000, 22_000_000, 200},
			steps:     []step{{"COPY /app/dist /usr/share/nginx/html # buildkit", 610_000}}},
	}
}

// name is the image's repository and tag without the registry host.
func (s sample) name() string { return s.repo + ":" + s.tag }

// fixture is what the demo reads of a file in fixtureDir.
type fixture struct {
	Config     json.RawMessage `json:"config"`
	LayerSizes []int64         `json:"layer_sizes"`
	// Layers (or Manifest.Layers) carry the layers' real digests.
	Layers   []v1.Descriptor `json:"layers"`
	Manifest *v1.Manifest    `json:"manifest"`
	// ReferenceManifest is a real manifest kept as text (distroless-java17).
	ReferenceManifest string `json:"x_reference_manifest_2023_02_14"`
}

// referenceLayer matches one layer descriptor in a reference manifest text.
var referenceLayer = regexp.MustCompile(`"mediaType":\s*"[^"]*(?:layer|rootfs)[^"]*",\s*"size":\s*(\d+),\s*"digest":\s*"(sha256:[0-9a-f]{64})"`)

// baseLayers returns the base image's layers: real sizes and digests where
// the fixture records them, else the sample's estimates with made-up
// digests. estimated reports the latter.
func (fx fixture) baseLayers(s sample) (layers []v1.Descriptor, estimated bool, err error) {
	desc := func(size int64, digest string) (v1.Descriptor, error) {
		h, err := v1.NewHash(digest)
		return v1.Descriptor{MediaType: types.OCILayer, Size: size, Digest: h}, err
	}
	known := fx.Layers
	if fx.Manifest != nil {
		known = fx.Manifest.Layers
	}
	switch {
	case len(fx.LayerSizes) > 0 && len(known) == len(fx.LayerSizes):
		for i, size := range fx.LayerSizes {
			d, err := desc(size, known[i].Digest.String())
			if err != nil {
				return nil, false, err
			}
			layers = append(layers, d)
		}
		return layers, false, nil
	case fx.ReferenceManifest != "":
		for _, m := range referenceLayer.FindAllStringSubmatch(fx.ReferenceManifest, -1) {
			size, _ := strconv.ParseInt(m[1], 10, 64)
			d, err := desc(size, m[2])
			if err != nil {
				return nil, false, err
			}
			layers = append(layers, d)
		}
		return layers, false, nil
	case len(s.estimated) > 0:
		for i, size := range s.estimated {
			layers = append(layers, v1.Descriptor{MediaType: types.OCILayer, Size: size, Digest: madeUp(s, "base", i)})
		}
		return layers, true, nil
	}
	return nil, false, fmt.Errorf("fixture %s records no layer sizes and the sample gives no estimate", s.fixture)
}

// madeUp is a stable digest for a layer whose blob does not exist.
func madeUp(s sample, kind string, i int) v1.Hash {
	h, _, _ := v1.SHA256(strings.NewReader(fmt.Sprintf("slimgate demo %s %s layer %d", s.name(), kind, i)))
	return h
}

// built is a sample as pushed: its manifest and config, and the facts
// slimgate derives from them.
type built struct {
	sample
	ref       string
	estimated bool
	facts     *image.Facts
	manifest  []byte
	config    []byte
}

// build assembles a sample's config and manifest from its fixture.
func build(root, host string, s sample) (*built, error) {
	data, err := os.ReadFile(filepath.Join(root, fixtureDir, s.fixture+".json"))
	if err != nil {
		return nil, fmt.Errorf("reading the %s fixture: %w", s.fixture, err)
	}
	var fx fixture
	if err := json.Unmarshal(data, &fx); err != nil {
		return nil, fmt.Errorf("parsing the %s fixture: %w", s.fixture, err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(fx.Config, &cfg); err != nil {
		return nil, fmt.Errorf("parsing the %s config: %w", s.fixture, err)
	}
	layers, estimated, err := fx.baseLayers(s)
	if err != nil {
		return nil, err
	}
	steps := s.steps
	if s.cmd != nil {
		j, _ := json.Marshal(s.cmd)
		steps = append(steps[:len(steps):len(steps)], step{createdBy: "CMD " + string(j)})
		cfg.Config.Cmd = s.cmd
	}
	stamp := v1.Time{Time: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	for i, st := range steps {
		cfg.History = append(cfg.History, v1.History{Created: stamp, CreatedBy: st.createdBy,
			Comment: "buildkit.dockerfile.v0", EmptyLayer: st.size == 0})
		if st.size == 0 {
			continue
		}
		layers = append(layers, v1.Descriptor{MediaType: types.OCILayer, Size: st.size, Digest: madeUp(s, "app", i)})
		if len(cfg.RootFS.DiffIDs) > 0 {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, madeUp(s, "diff", i))
		}
	}
	b := &built{sample: s, ref: host + "/" + s.name(), estimated: estimated}
	if b.config, err = json.Marshal(&cfg); err != nil {
		return nil, err
	}
	cd, _, _ := v1.SHA256(bytes.NewReader(b.config))
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Layers: layers,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(b.config)), Digest: cd}}
	if b.manifest, err = json.Marshal(&m); err != nil {
		return nil, err
	}
	if b.facts, err = image.FromParts(&m, &cfg); err != nil {
		return nil, err
	}
	md, _, _ := v1.SHA256(bytes.NewReader(b.manifest))
	b.facts.Reference, b.facts.Digest = b.ref, md.String()
	return b, nil
}

// rawManifest is a manifest pushed as is with remote.Put.
type rawManifest struct{ b []byte }

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// push uploads the config blob and the manifest. The layer blobs are not
// uploaded: slimgate never reads them, and the registry does not ask for
// them before accepting a manifest.
func (b *built) push() error {
	ref, err := name.ParseReference(b.ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.WriteLayer(ref.Context(), static.NewLayer(b.config, types.OCIConfigJSON)); err != nil {
		return fmt.Errorf("pushing the config of %s: %w", b.ref, err)
	}
	if err := remote.Put(ref, rawManifest{b.manifest}); err != nil {
		return fmt.Errorf("pushing the manifest of %s: %w", b.ref, err)
	}
	return nil
}
