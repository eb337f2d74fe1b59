package devcluster

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BuildImage makes a linux/amd64 image with exactly this history and
// environment: one random layer of layerSize bytes per history entry that
// adds one, the last of them of lastLayerSize bytes when that is above 0.
func BuildImage(history []v1.History, env []string, layerSize, lastLayerSize int64) (v1.Image, error) {
	layers, err := randomLayers(layerCount(history), layerSize, lastLayerSize)
	if err != nil {
		return nil, err
	}
	return Assemble(layers, &v1.ConfigFile{OS: "linux", Architecture: "amd64", History: history, Config: v1.Config{Env: env}})
}

// ImageFromConfig makes an image whose config is cfg (a real image's, say)
// with one random layer of layerSize bytes per history entry that adds one;
// only cfg's rootfs is replaced, by the layers' diff IDs. cfg is not
// modified.
func ImageFromConfig(cfg *v1.ConfigFile, layerSize int64) (v1.Image, error) {
	layers, err := randomLayers(layerCount(cfg.History), layerSize, 0)
	if err != nil {
		return nil, err
	}
	return Assemble(layers, cfg)
}

// Assemble makes the image of these layers whose config is cfg but for
// its rootfs, which lists the layers' diff IDs. cfg is not modified. The
// layers may be stand-ins that know their digests and sizes only: the
// image's manifest and config never read their content.
func Assemble(layers []v1.Layer, cfg *v1.ConfigFile) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, fmt.Errorf("appending the layers: %w", err)
	}
	built, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	c := cfg.DeepCopy()
	c.RootFS = built.RootFS
	return mutate.ConfigFile(img, c)
}

// Fixture is an image fixture of pkg/policy/testdata/images: a real
// image's config and the compressed sizes of its layers, as published.
type Fixture struct {
	// Config is the image's config.
	Config v1.ConfigFile `json:"config"`
	// LayerSizes are the compressed sizes of its layers, in order; empty
	// when the fixture does not record them.
	LayerSizes []int64 `json:"layer_sizes"`
}

// ReadFixture reads an image fixture: a JSON file with the config under
// "config" and the layer sizes under "layer_sizes".
func ReadFixture(path string) (*Fixture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fx Fixture
	if err := json.Unmarshal(data, &fx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fx, nil
}

// ReadFixtureConfig reads the config of an image fixture (see ReadFixture).
func ReadFixtureConfig(path string) (*v1.ConfigFile, error) {
	fx, err := ReadFixture(path)
	if err != nil {
		return nil, err
	}
	return &fx.Config, nil
}

// layerCount is the number of layers history adds.
func layerCount(history []v1.History) int {
	n := 0
	for _, h := range history {
		if !h.EmptyLayer {
			n++
		}
	}
	return n
}

// randomLayers makes n random layers of size bytes, the last of lastSize
// bytes when that is above 0.
func randomLayers(n int, size, lastSize int64) ([]v1.Layer, error) {
	layers := make([]v1.Layer, 0, n)
	for i := range n {
		s := size
		if i == n-1 && lastSize > 0 {
			s = lastSize
		}
		l, err := random.Layer(s, types.DockerLayer)
		if err != nil {
			return nil, fmt.Errorf("making a layer: %w", err)
		}
		layers = append(layers, l)
	}
	return layers, nil
}

// Push uploads an image or an index to ref over plain HTTP (the
// registries here are on loopback).
func Push(ref string, img remote.Taggable, opts ...remote.Option) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Push(r, img, opts...); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}
