package local

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/registry"
)

// archiveEntry is what is known of one file in a tar without reading it.
type archiveEntry struct {
	size       int64
	link       string // target of a symbolic or hard link, cleaned
	compressed bool   // starts with a gzip or zstd magic number
}

func inspectArchive(ref, spec string) (*registry.Inspection, error) {
	file, sel, _ := strings.Cut(spec, ":")
	if file == "" {
		return nil, registry.Reasoned(registry.ReasonBadReference, errors.New("want docker-archive:PATH[:TAG]"))
	}
	entries, rawManifest, err := scanArchive(file)
	if err != nil {
		return nil, err
	}
	var m tarball.Manifest
	if err := json.Unmarshal(rawManifest, &m); err != nil {
		return nil, fmt.Errorf("parsing the archive's manifest.json: %w", err)
	}
	desc, err := pickArchiveImage(m, sel)
	if err != nil {
		return nil, err
	}
	rawCfg, err := readArchiveFile(file, entries, desc.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", desc.Config, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("parsing config %s: %w", desc.Config, err)
	}
	cfgDigest, _, err := v1.SHA256(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(desc.Layers) {
		return nil, fmt.Errorf("config lists %d layers, the archive %d", len(cfg.RootFS.DiffIDs), len(desc.Layers))
	}
	// A docker archive has no registry manifest: build one from what the
	// archive stores, with the layer sizes as stored.
	man := &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(rawCfg)), Digest: cfgDigest},
	}
	uncompressed := 0
	for i, layerPath := range desc.Layers {
		_, e, err := resolveEntry(entries, layerPath)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		l := v1.Descriptor{MediaType: types.DockerUncompressedLayer, Size: e.size, Digest: cfg.RootFS.DiffIDs[i]}
		if e.compressed {
			l.MediaType = types.DockerLayer
			// The compressed digest is known only when the file is named by it.
			if h, err := v1.NewHash("sha256:" + strings.TrimSuffix(strings.TrimSuffix(path.Base(layerPath), ".gz"), ".tar")); err == nil {
				l.Digest = h
			}
		} else {
			uncompressed++
		}
		man.Layers = append(man.Layers, l)
	}
	f, err := image.FromParts(man, cfg)
	if err != nil {
		return nil, err
	}
	f.Reference = ref
	f.Digest = cfgDigest.String()
	insp := &registry.Inspection{
		Reference: ref,
		Digest:    f.Digest,
		Images:    []*image.Facts{f},
		Notes:     []string{"docker-archive holds no registry manifest: the digest is the image ID (config digest)"},
	}
	if uncompressed > 0 {
		insp.Notes = append(insp.Notes, fmt.Sprintf("docker-archive stores %d of %d layers uncompressed: sizes are uncompressed, larger than a registry's compressed sizes", uncompressed, len(desc.Layers)))
	}
	return insp, nil
}

// pickArchiveImage finds the image sel names: a tag from RepoTags or
// "@N", the N-th image; empty picks the only image.
func pickArchiveImage(m tarball.Manifest, sel string) (tarball.Descriptor, error) {
	if len(m) == 0 {
		return tarball.Descriptor{}, registry.Reasoned(registry.ReasonNotFound, errors.New("the archive's manifest.json lists no images"))
	}
	if n, ok := strings.CutPrefix(sel, "@"); ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i >= len(m) {
			return tarball.Descriptor{}, registry.Reasoned(registry.ReasonBadReference, fmt.Errorf("source index %q is not between 0 and %d", n, len(m)-1))
		}
		return m[i], nil
	}
	if sel == "" {
		if len(m) == 1 {
			return m[0], nil
		}
		return tarball.Descriptor{}, registry.Reasoned(registry.ReasonBadReference, fmt.Errorf("the archive holds %d images: name one as docker-archive:PATH:TAG or docker-archive:PATH:@INDEX (%s)", len(m), archiveTags(m)))
	}
	want, werr := name.ParseReference(sel)
	for _, d := range m {
		for _, t := range d.RepoTags {
			if t == sel {
				return d, nil
			}
			if got, err := name.ParseReference(t); werr == nil && err == nil && got.Name() == want.Name() {
				return d, nil
			}
		}
	}
	return tarball.Descriptor{}, registry.Reasoned(registry.ReasonNotFound, fmt.Errorf("no image tagged %q in the archive (%s)", sel, archiveTags(m)))
}

func archiveTags(m tarball.Manifest) string {
	var out []string
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			out = append(out, fmt.Sprintf("@%d untagged", i))
			continue
		}
		out = append(out, fmt.Sprintf("@%d %s", i, strings.Join(d.RepoTags, " ")))
	}
	return "images: " + strings.Join(out, ", ")
}

// scanArchive indexes a tar's files and returns its manifest.json. Layer
// contents are skipped (seeked over), except their first bytes.
func scanArchive(file string) (map[string]archiveEntry, []byte, error) {
	fh, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, registry.Reasoned(registry.ReasonNotFound, err)
		}
		return nil, nil, err
	}
	defer fh.Close()
	entries := map[string]archiveEntry{}
	var manifest []byte
	tr := tar.NewReader(fh)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading the archive: %w", err)
		}
		if len(entries) == maxArchiveEntries {
			return nil, nil, registry.Reasoned(registry.ReasonTooLarge, fmt.Errorf("the archive has more than %d files", maxArchiveEntries))
		}
		n := path.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeSymlink:
			// Only an index of names in memory: nothing is written to disk.
			entries[n] = archiveEntry{link: path.Join(path.Dir(n), h.Linkname)} //nolint:gosec // G305 is about extracting; nothing is
		case tar.TypeLink:
			entries[n] = archiveEntry{link: path.Clean(h.Linkname)}
		case tar.TypeReg:
			if n == "manifest.json" {
				if manifest, err = readAll(tr, "manifest.json"); err != nil {
					return nil, nil, err
				}
			}
			var magic [4]byte
			k, _ := io.ReadFull(tr, magic[:])
			entries[n] = archiveEntry{size: h.Size, compressed: isCompressed(magic[:k])}
		}
	}
	if manifest == nil {
		return nil, nil, errors.New("the archive has no manifest.json: not a docker save archive")
	}
	return entries, manifest, nil
}

func isCompressed(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0x1f, 0x8b}) || bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// resolveEntry follows links to a regular file and returns its name.
func resolveEntry(entries map[string]archiveEntry, n string) (string, archiveEntry, error) {
	n = path.Clean(n)
	for range 16 {
		e, ok := entries[n]
		if !ok {
			return "", archiveEntry{}, fmt.Errorf("%s is not in the archive", n)
		}
		if e.link == "" {
			return n, e, nil
		}
		n = e.link
	}
	return "", archiveEntry{}, fmt.Errorf("%s: too many links", n)
}

// readArchiveFile reads one (small) file from the archive by name,
// following links.
func readArchiveFile(file string, entries map[string]archiveEntry, n string) ([]byte, error) {
	n, e, err := resolveEntry(entries, n)
	if err != nil {
		return nil, err
	}
	if e.size > maxDocument {
		return nil, registry.Reasoned(registry.ReasonTooLarge, fmt.Errorf("%s is %d bytes, more than the %d allowed", n, e.size, maxDocument))
	}
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s vanished from the archive: %w", n, err)
		}
		if path.Clean(h.Name) == n && h.Typeflag == tar.TypeReg {
			return readAll(tr, n)
		}
	}
}
