package registry

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
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/pkg/image"
)

// Local transports, named as skopeo names them.
const (
	// TransportOCI reads an OCI image layout folder: "oci:PATH[:TAG|@DIGEST]".
	TransportOCI = "oci"
	// TransportDockerArchive reads a docker save tarball:
	// "docker-archive:PATH[:TAG|:@INDEX]".
	TransportDockerArchive = "docker-archive"
)

// Limits on what a local source may make us read.
const (
	// maxLocalDocument caps index.json, manifests, configs and a docker
	// archive's manifest.json.
	maxLocalDocument = 8 << 20
	// maxLocalPlatforms caps the platforms judged in one multi-platform image.
	maxLocalPlatforms = 16
	// maxArchiveEntries caps the files indexed in a docker archive.
	maxArchiveEntries = 1 << 17
	// refNameAnnotation tags an entry of an OCI layout's index.json.
	refNameAnnotation = "org.opencontainers.image.ref.name"
)

// IsLocal reports whether ref names a local image source ("oci:PATH..." or
// "docker-archive:PATH...") rather than a registry reference.
func IsLocal(ref string) bool {
	t, _, ok := strings.Cut(ref, ":")
	return ok && (t == TransportOCI || t == TransportDockerArchive)
}

// InspectLocal reads the facts of a local image: "oci:PATH[:TAG|@DIGEST]"
// (an OCI image layout folder) or "docker-archive:PATH[:TAG|:@INDEX]" (a
// docker save tarball). Only index, manifest and config are read, so layer
// blobs need not be present. platforms ("os/arch[/variant]") picks the
// platforms of a multi-platform image; empty means every linux platform.
// Failures are *InspectionError.
func InspectLocal(ref string, platforms []string) (*Inspection, error) {
	transport, rest, _ := strings.Cut(ref, ":")
	var (
		insp *Inspection
		err  error
	)
	switch transport {
	case TransportOCI:
		insp, err = inspectLayout(ref, rest, platforms)
	case TransportDockerArchive:
		insp, err = inspectArchive(ref, rest)
	default:
		err = reasoned(ReasonBadReference, errors.New("not a local image: want oci:PATH or docker-archive:PATH"))
	}
	if err != nil {
		// Keep the whole error, with the context wrapped around a reasoned
		// one ("reading config of ..."), as the remote path does.
		reason := ReasonInvalid
		var re *reasonedError
		if errors.As(err, &re) {
			reason = re.reason
		}
		return nil, &InspectionError{Reference: ref, Reason: reason, Err: err}
	}
	return insp, nil
}

// readCapped reads a whole file of at most maxLocalDocument bytes.
func readCapped(file string) ([]byte, error) {
	fh, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, reasoned(ReasonNotFound, err)
		}
		return nil, err
	}
	defer fh.Close()
	return readBody(fh, maxLocalDocument, file)
}

// --- OCI image layout ---

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

func inspectLayout(ref, spec string, platforms []string) (*Inspection, error) {
	dir, tag, digest := splitLayoutRef(spec)
	if dir == "" || tag == ":" {
		return nil, reasoned(ReasonBadReference, errors.New("want oci:PATH[:TAG|@DIGEST]"))
	}
	var want v1.Hash
	if digest != "" {
		h, err := v1.NewHash(digest)
		if err != nil {
			return nil, reasoned(ReasonBadReference, fmt.Errorf("bad digest: %w", err))
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
	insp := &Inspection{Reference: ref, Digest: desc.Digest.String()}
	switch {
	case desc.MediaType.IsIndex():
		child, err := l.index(desc)
		if err != nil {
			return nil, err
		}
		wanted, err := normalisePlatforms(platforms)
		if err != nil {
			return nil, reasoned(ReasonBadReference, err)
		}
		picked, notes, err := selectPlatforms(child.Manifests, wanted, maxLocalPlatforms)
		if err != nil {
			return nil, err
		}
		insp.Notes = append(insp.Notes, notes...)
		for _, d := range picked {
			f, err := l.facts(ref, d)
			if err != nil {
				return nil, err
			}
			f.IndexDigest = desc.Digest.String()
			insp.Images = append(insp.Images, f)
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
		return v1.Descriptor{}, reasoned(ReasonNotFound, fmt.Errorf("no image with digest %s in the layout (%s)", want, listEntries(idx)))
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
			return v1.Descriptor{}, reasoned(ReasonNotFound, fmt.Errorf("no image tagged %q in the layout (%s)", tag, listEntries(idx)))
		default:
			return v1.Descriptor{}, reasoned(ReasonBadReference, fmt.Errorf("%d images are tagged %q; name one by digest as oci:PATH@DIGEST", len(found), tag))
		}
	}
	switch len(idx.Manifests) {
	case 1:
		return idx.Manifests[0], nil
	case 0:
		return v1.Descriptor{}, reasoned(ReasonNotFound, errors.New("the layout's index.json lists no images"))
	default:
		return v1.Descriptor{}, reasoned(ReasonBadReference, fmt.Errorf("the layout holds %d images: name one as oci:PATH:TAG or oci:PATH@DIGEST (%s)", len(idx.Manifests), listEntries(idx)))
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
	if d.Size > maxLocalDocument {
		return nil, reasoned(ReasonTooLarge, fmt.Errorf("blob %s declares %d bytes, more than the %d allowed", d.Digest, d.Size, maxLocalDocument))
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

func (l layoutDir) index(d v1.Descriptor) (*v1.IndexManifest, error) {
	b, err := l.blob(d)
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing index %s: %w", d.Digest, err)
	}
	return idx, nil
}

// facts reads one image's manifest and config; never its layers.
func (l layoutDir) facts(ref string, d v1.Descriptor) (*image.Facts, error) {
	b, err := l.blob(d)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", d.Digest, err)
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

// --- docker save archive ---

// archiveEntry is what is known of one file in a tar without reading it.
type archiveEntry struct {
	size       int64
	link       string // target of a symbolic or hard link, cleaned
	compressed bool   // starts with a gzip or zstd magic number
}

func inspectArchive(ref, spec string) (*Inspection, error) {
	file, sel, _ := strings.Cut(spec, ":")
	if file == "" {
		return nil, reasoned(ReasonBadReference, errors.New("want docker-archive:PATH[:TAG]"))
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
	insp := &Inspection{
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
		return tarball.Descriptor{}, reasoned(ReasonNotFound, errors.New("the archive's manifest.json lists no images"))
	}
	if n, ok := strings.CutPrefix(sel, "@"); ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i >= len(m) {
			return tarball.Descriptor{}, reasoned(ReasonBadReference, fmt.Errorf("source index %q is not between 0 and %d", n, len(m)-1))
		}
		return m[i], nil
	}
	if sel == "" {
		if len(m) == 1 {
			return m[0], nil
		}
		return tarball.Descriptor{}, reasoned(ReasonBadReference, fmt.Errorf("the archive holds %d images: name one as docker-archive:PATH:TAG or docker-archive:PATH:@INDEX (%s)", len(m), archiveTags(m)))
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
	return tarball.Descriptor{}, reasoned(ReasonNotFound, fmt.Errorf("no image tagged %q in the archive (%s)", sel, archiveTags(m)))
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
			return nil, nil, reasoned(ReasonNotFound, err)
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
			return nil, nil, reasoned(ReasonTooLarge, fmt.Errorf("the archive has more than %d files", maxArchiveEntries))
		}
		n := path.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeSymlink:
			entries[n] = archiveEntry{link: path.Join(path.Dir(n), h.Linkname)}
		case tar.TypeLink:
			entries[n] = archiveEntry{link: path.Clean(h.Linkname)}
		case tar.TypeReg:
			if n == "manifest.json" {
				if manifest, err = readBody(tr, maxLocalDocument, "manifest.json"); err != nil {
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
	if e.size > maxLocalDocument {
		return nil, reasoned(ReasonTooLarge, fmt.Errorf("%s is %d bytes, more than the %d allowed", n, e.size, maxLocalDocument))
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
			return readBody(tr, maxLocalDocument, n)
		}
	}
}
