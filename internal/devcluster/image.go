package devcluster

import (
	"fmt"

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
	n := 0
	for _, h := range history {
		if !h.EmptyLayer {
			n++
		}
	}
	img := empty.Image
	for i := range n {
		size := layerSize
		if i == n-1 && lastLayerSize > 0 {
			size = lastLayerSize
		}
		l, err := random.Layer(size, types.DockerLayer)
		if err != nil {
			return nil, fmt.Errorf("making a layer: %w", err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, fmt.Errorf("appending a layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.History = history
	cf.Config.Env = env
	return mutate.ConfigFile(img, cf)
}

// Push uploads img to ref over plain HTTP (the registries here are on
// loopback).
func Push(ref string, img v1.Image, opts ...remote.Option) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}
