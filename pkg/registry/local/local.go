package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"slimgate.dev/slimgate/pkg/registry"
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
	// maxDocument caps index.json, manifests, configs and a docker
	// archive's manifest.json.
	maxDocument = 8 << 20
	// maxArchiveEntries caps the files indexed in a docker archive.
	maxArchiveEntries = 1 << 17
)

// IsLocal reports whether ref names a local image source ("oci:PATH..." or
// "docker-archive:PATH...") rather than a registry reference.
func IsLocal(ref string) bool {
	t, _, ok := strings.Cut(ref, ":")
	return ok && (t == TransportOCI || t == TransportDockerArchive)
}

// Inspect reads the facts of a local image: "oci:PATH[:TAG|@DIGEST]"
// (an OCI image layout folder) or "docker-archive:PATH[:TAG|:@INDEX]" (a
// docker save tarball). Only index, manifest and config are read, so layer
// blobs need not be present. platforms ("os/arch[/variant]") picks the
// platforms of a multi-platform image; empty means every linux platform.
// Failures are *registry.InspectionError.
func Inspect(ref string, platforms []string) (*registry.Inspection, error) {
	transport, rest, _ := strings.Cut(ref, ":")
	var (
		insp *registry.Inspection
		err  error
	)
	switch transport {
	case TransportOCI:
		insp, err = inspectLayout(ref, rest, platforms)
	case TransportDockerArchive:
		insp, err = inspectArchive(ref, rest)
	default:
		err = registry.Reasoned(registry.ReasonBadReference, errors.New("not a local image: want oci:PATH or docker-archive:PATH"))
	}
	if err != nil {
		// Keep the whole error, with the context wrapped around a reasoned
		// one ("reading config of ..."), as the remote path does.
		reason, ok := registry.ReasonOf(err)
		if !ok {
			reason = registry.ReasonInvalid
		}
		return nil, &registry.InspectionError{Reference: ref, Reason: reason, Err: err}
	}
	return insp, nil
}

// readCapped reads a whole file of at most maxDocument bytes.
func readCapped(file string) ([]byte, error) {
	fh, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, registry.Reasoned(registry.ReasonNotFound, err)
		}
		return nil, err
	}
	defer fh.Close()
	return readAll(fh, file)
}

// readAll reads at most maxDocument bytes; more is ReasonTooLarge.
func readAll(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxDocument+1))
	switch {
	case len(b) > maxDocument:
		return nil, registry.Reasoned(registry.ReasonTooLarge, fmt.Errorf("%s is larger than the %d bytes allowed", what, maxDocument))
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return b, nil
}
