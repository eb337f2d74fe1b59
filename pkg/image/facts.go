package image

import (
	"errors"
	"fmt"
	"math"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// NoLayer marks a history entry or layer whose counterpart is unknown or absent.
const NoLayer = -1

// Facts is everything policy evaluation may know about one image for one
// platform. It is built from the manifest and the config blob only.
type Facts struct {
	// Reference is the image as the user wrote it or as it was resolved.
	Reference string `json:"reference"`
	// Digest is the digest of the platform manifest (sha256:...).
	Digest string `json:"digest"`
	// IndexDigest is the digest of the index the manifest was picked from,
	// if any.
	IndexDigest string `json:"indexDigest,omitempty"`
	// MediaType is the media type of the manifest.
	MediaType string `json:"mediaType,omitempty"`
	// Platform is the os/architecture the config declares.
	Platform Platform `json:"platform"`

	// History lists the config's history entries in build order.
	History []HistoryEntry `json:"history,omitempty"`
	// HistoryMapped is true when every non-empty history entry could be
	// paired with exactly one layer (counts matched). When false, no
	// HistoryEntry.Layer is set: we do not guess.
	HistoryMapped bool `json:"historyMapped"`

	// Env is the config's environment, KEY=VALUE as in the config.
	Env []string `json:"env,omitempty"`
	// Labels are the config's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// User is the config's user, empty for root by default.
	User string `json:"user,omitempty"`
	// Entrypoint is the config's entrypoint.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Cmd is the config's default command.
	Cmd []string `json:"cmd,omitempty"`
	// WorkingDir is the config's working directory.
	WorkingDir string `json:"workingDir,omitempty"`

	// Layers lists the manifest's layers in order.
	Layers []Layer `json:"layers,omitempty"`
	// CompressedSize is the sum of the layers' compressed sizes.
	CompressedSize int64 `json:"compressedSize"`
}

// Platform is an image's operating system and CPU architecture.
type Platform struct {
	OS           string `json:"os,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	Variant      string `json:"variant,omitempty"`
}

// String formats the platform as os/arch[/variant].
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// HistoryEntry is one line of the config's history: one Dockerfile
// instruction or one build step.
type HistoryEntry struct {
	// Index is the position in the config's history, from 0.
	Index int `json:"index"`
	// CreatedBy is the instruction, e.g. "RUN /bin/sh -c go build ...".
	CreatedBy string `json:"createdBy,omitempty"`
	// Comment is the history comment (often "buildkit.dockerfile.v0").
	Comment string `json:"comment,omitempty"`
	// EmptyLayer is true when the step added no layer (ENV, CMD, ...).
	EmptyLayer bool `json:"emptyLayer,omitempty"`
	// Layer is the index in Facts.Layers of the layer this step added, or
	// NoLayer when it added none or the mapping is unknown.
	Layer int `json:"layer"`
}

// Layer is one layer as the manifest declares it.
type Layer struct {
	// Digest is the layer's compressed digest.
	Digest string `json:"digest"`
	// MediaType is the layer's media type.
	MediaType string `json:"mediaType,omitempty"`
	// Size is the compressed size in bytes, from the manifest.
	Size int64 `json:"size"`
	// History is the index of the history entry that added this layer, or
	// NoLayer when unknown.
	History int `json:"history"`
}

// LayerSize returns the compressed size of the layer a history entry added,
// or 0 when it added none or the mapping is unknown.
func (f *Facts) LayerSize(historyIndex int) int64 {
	if historyIndex < 0 || historyIndex >= len(f.History) {
		return 0
	}
	l := f.History[historyIndex].Layer
	if l < 0 || l >= len(f.Layers) {
		return 0
	}
	return f.Layers[l].Size
}

// ErrNoConfig is returned when an image has no config to read.
var ErrNoConfig = errors.New("image has no config")

// FromImage builds facts from an image, reading only its manifest and config.
// reference is recorded as given.
func FromImage(img v1.Image, reference string) (*Facts, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing manifest digest: %w", err)
	}
	f, err := FromParts(m, cfg)
	if err != nil {
		return nil, err
	}
	f.Reference = reference
	f.Digest = d.String()
	return f, nil
}

// FromParts builds facts from an already parsed manifest and config. The
// caller sets Reference, Digest and IndexDigest.
func FromParts(m *v1.Manifest, cfg *v1.ConfigFile) (*Facts, error) {
	if m == nil {
		return nil, errors.New("image has no manifest")
	}
	if cfg == nil {
		return nil, ErrNoConfig
	}
	f := &Facts{
		MediaType: string(m.MediaType),
		Platform: Platform{
			OS:           cfg.OS,
			Architecture: cfg.Architecture,
			Variant:      cfg.Variant,
		},
		Env:        cfg.Config.Env,
		Labels:     cfg.Config.Labels,
		User:       cfg.Config.User,
		Entrypoint: cfg.Config.Entrypoint,
		Cmd:        cfg.Config.Cmd,
		WorkingDir: cfg.Config.WorkingDir,
	}
	for _, l := range m.Layers {
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %s declares a negative size", l.Digest)
		}
		if l.Size > math.MaxInt64-f.CompressedSize {
			return nil, fmt.Errorf("layer sizes add up to more than %d bytes", int64(math.MaxInt64))
		}
		f.Layers = append(f.Layers, Layer{
			Digest:    l.Digest.String(),
			MediaType: string(l.MediaType),
			Size:      l.Size,
			History:   NoLayer,
		})
		f.CompressedSize += l.Size
	}
	nonEmpty := 0
	for i, h := range cfg.History {
		f.History = append(f.History, HistoryEntry{
			Index:      i,
			CreatedBy:  h.CreatedBy,
			Comment:    h.Comment,
			EmptyLayer: h.EmptyLayer,
			Layer:      NoLayer,
		})
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	// Pair history with layers only when the counts agree; squashed, ko,
	// bazel and hand-assembled images often disagree, and a wrong pairing
	// would blame the wrong step for the wrong bytes.
	if nonEmpty > 0 && nonEmpty == len(f.Layers) {
		f.HistoryMapped = true
		layer := 0
		for i := range f.History {
			if f.History[i].EmptyLayer {
				continue
			}
			f.History[i].Layer = layer
			f.Layers[layer].History = i
			layer++
		}
	}
	return f, nil
}
