package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"slimgate.dev/slimgate/pkg/image"
)

// manifestAccept lists the manifest media types we read. Schema 1 is not
// among them: a registry that still serves it gets a clear error.
var manifestAccept = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1),
	string(types.DockerManifestList), string(types.DockerManifestSchema2),
}, ", ")

// fetchOnce reads p from one target: the manifest, then what it names,
// all from that target.
func (r *Remote) fetchOnce(ctx context.Context, p prepared, req Request, t target) (*Inspection, error) {
	if t.mirror {
		if err := r.checkMirror(t, req.Egress); err != nil {
			return nil, err
		}
	}
	s, err := r.session(ctx, t.repo, p.repo, req)
	if err != nil {
		return nil, err
	}
	refName := p.refName
	digest, body, mediaType, err := s.resolve(ctx, p.ref, refName)
	if err != nil {
		return nil, err
	}
	doc, err := s.document(ctx, digest, body, mediaType)
	if err != nil {
		return nil, err
	}
	key := resolvedKey(req.CredentialScope, refName)
	r.resolved.add(key, digest.String(), r.opts.TagTTL)

	insp, sel, err := r.plan(doc, refName, digest.String(), p.platforms)
	if err != nil || doc.facts != nil { // an image: insp is complete
		return insp, err
	}
	read := make([]*image.Facts, len(sel.Entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, d := range sel.Entries {
		g.Go(func() error {
			if d.Size > r.opts.MaxManifestBytes {
				return reasoned(ReasonTooLarge, fmt.Errorf("manifest %s declares %d bytes, more than the %d allowed", d.Digest, d.Size, r.opts.MaxManifestBytes))
			}
			child, err := s.document(gctx, d.Digest, nil, "")
			if err != nil && reasonOf(err) == ReasonNotFound && !t.mirror {
				// The index is the author's: an entry the registry lacks
				// is the image's fault, not a tag somebody mistyped. A
				// mirror that lacks it passes the turn to the next target.
				err = reasoned(ReasonInvalid, fmt.Errorf("the index names manifest %s, which the registry does not have: %w", d.Digest, err))
			}
			if err != nil {
				return fmt.Errorf("platform %s: %w", placeName(d), err)
			}
			if child.facts == nil {
				return reasoned(ReasonInvalid, fmt.Errorf("index entry %s is an index, not an image", d.Digest))
			}
			read[i] = withRef(child.facts, refName, insp.Digest)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if insp.Images, err = sel.Judged(read); err != nil {
		return nil, err
	}
	return insp, nil
}

// resolve finds the digest a reference names. A tag seen before, or any
// tag on a HeadFirst registry (Docker Hub), is resolved with a HEAD (cheap,
// and not counted by Docker Hub's pull limits), falling back to a GET when
// HEAD is refused or gives no digest; elsewhere a tag seen for the first
// time goes to the GET directly. The GET's body is
// then returned for reuse. A digest reference is checked with a HEAD when its
// document is already cached, so this scope proves its access; the HEAD
// must name the digest, else the manifest's hash confirms it.
func (s *session) resolve(ctx context.Context, ref name.Reference, refName string) (v1.Hash, []byte, types.MediaType, error) {
	if d, ok := ref.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return v1.Hash{}, nil, "", reasoned(ReasonBadReference, err)
		}
		if _, cached := s.r.docs.get(docKey(s.repo, h.String())); !cached {
			return h, nil, "", nil // the GET by digest checks access and content itself
		}
		got, _, err := s.head(ctx, h.String())
		if err != nil && !headUnsupported(err) {
			return v1.Hash{}, nil, "", err
		}
		if err == nil && got == h {
			return h, nil, "", nil
		}
		if err == nil && got != (v1.Hash{}) {
			return v1.Hash{}, nil, "", reasoned(ReasonInvalid, fmt.Errorf("registry answered digest %s for %s", got, h))
		}
		// No HEAD, or one without a digest: the body's hash confirms it.
		body, mt, _, err := s.getManifest(ctx, h.String())
		if err != nil {
			return v1.Hash{}, nil, "", err
		}
		if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != h.Hex {
			return v1.Hash{}, nil, "", reasoned(ReasonInvalid, fmt.Errorf("manifest %s was served with content of digest sha256:%x", h, sum))
		}
		return h, body, mt, nil
	}
	tag := ref.Identifier()
	// A reference asked about before is checked with a HEAD: its manifest
	// is likely cached, and then the HEAD is all it costs. One seen for the
	// first time goes straight to the GET it will need anyway, saving a
	// round trip on every cold inspection.
	_, seen := s.r.seen.get(refName)
	if !seen {
		s.r.seen.add(refName, struct{}{}, 0)
	}
	if seen || slices.Contains(s.r.opts.HeadFirst, s.host) {
		h, mt, err := s.head(ctx, tag)
		if err == nil && h != (v1.Hash{}) {
			return h, nil, mt, nil
		}
		if err != nil && !headUnsupported(err) {
			return v1.Hash{}, nil, "", err
		}
	}
	body, mt, declared, err := s.getManifest(ctx, tag)
	if err != nil {
		return v1.Hash{}, nil, "", err
	}
	sum := sha256.Sum256(body)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if declared != "" && declared != h.String() {
		return v1.Hash{}, nil, "", reasoned(ReasonInvalid, fmt.Errorf("manifest for tag %s has digest %s but the registry declared %s", tag, h, declared))
	}
	return h, body, mt, nil
}

// headUnsupported reports whether a failed HEAD is worth a GET: the
// registry answered, but not with not-found, unauthorized or rate-limited.
func headUnsupported(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.code {
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		return false
	}
	return true
}

// head asks for a manifest's digest and media type without its body.
func (s *session) head(ctx context.Context, ident string) (v1.Hash, types.MediaType, error) {
	resp, err := s.do(ctx, http.MethodHead, s.base+"/manifests/"+ident, manifestAccept)
	if err != nil {
		return v1.Hash{}, "", err
	}
	resp.Body.Close()
	mt := contentType(resp)
	d := resp.Header.Get("Docker-Content-Digest")
	if d == "" {
		return v1.Hash{}, mt, nil
	}
	h, err := v1.NewHash(d)
	if err != nil {
		return v1.Hash{}, "", reasoned(ReasonInvalid, fmt.Errorf("registry sent a malformed digest %q: %w", d, err))
	}
	return h, mt, nil
}

// getManifest reads a manifest body, capped at MaxManifestBytes however
// long the stream is, and returns the declared Docker-Content-Digest.
func (s *session) getManifest(ctx context.Context, ident string) ([]byte, types.MediaType, string, error) {
	resp, err := s.do(ctx, http.MethodGet, s.base+"/manifests/"+ident, manifestAccept)
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, s.r.opts.MaxManifestBytes, "manifest "+ident)
	if err != nil {
		return nil, "", "", err
	}
	return body, contentType(resp), resp.Header.Get("Docker-Content-Digest"), nil
}

// document returns the parsed manifest with the given digest, from the
// cache or the registry. body, when not nil, is that manifest already read.
func (s *session) document(ctx context.Context, digest v1.Hash, body []byte, mt types.MediaType) (*document, error) {
	key := docKey(s.repo, digest.String())
	if doc, ok := s.r.docs.get(key); ok {
		return doc, nil
	}
	if digest.Algorithm != "sha256" {
		return nil, reasoned(ReasonInvalid, fmt.Errorf("unsupported digest algorithm %q", digest.Algorithm))
	}
	if body == nil {
		var err error
		body, mt, _, err = s.getManifest(ctx, digest.String())
		if err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != digest.Hex {
		return nil, reasoned(ReasonInvalid, fmt.Errorf("manifest %s was served with content of digest sha256:%s", digest, got))
	}
	if err := checkElements(body, "manifest "+digest.String()); err != nil {
		return nil, err
	}
	kind, err := manifestKind(body, mt)
	if err != nil {
		return nil, err
	}
	var doc *document
	if kind.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(body))
		if err != nil {
			return nil, reasoned(ReasonInvalid, fmt.Errorf("parsing index %s: %w", digest, err))
		}
		// An index over the cap is refused before it is cached; what is
		// cached is only ever read whole (SelectPlatforms).
		if err := checkIndexEntries(len(idx.Manifests), s.r.opts.MaxIndexEntries); err != nil {
			return nil, err
		}
		doc = &document{entries: idx.Manifests}
	} else {
		facts, _, err := s.imageFacts(ctx, digest, body, kind)
		if err != nil {
			return nil, err
		}
		doc = &document{facts: facts}
	}
	s.r.docs.add(key, doc, 0)
	return doc, nil
}

// manifestKind decides a manifest's media type from its body (which wins
// when it says) and the Content-Type, refusing schema 1 and unknown types.
func manifestKind(body []byte, header types.MediaType) (types.MediaType, error) {
	var peek struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(body, &peek); err != nil {
		return "", reasoned(ReasonInvalid, fmt.Errorf("manifest is not valid JSON: %w", err))
	}
	mt := peek.MediaType
	if mt == "" {
		mt = header
	}
	if peek.SchemaVersion == 1 || mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed {
		return "", reasoned(ReasonInvalid, errors.New("the image has a Docker schema 1 manifest, which is deprecated and not supported; push it again with a current Docker or BuildKit"))
	}
	switch mt {
	case types.OCIImageIndex, types.DockerManifestList, types.OCIManifestSchema1, types.DockerManifestSchema2:
		return mt, nil
	case "", "application/json", "application/octet-stream":
		// OCI allows the mediaType field to be absent.
		if peek.SchemaVersion == 2 && peek.Manifests != nil {
			return types.OCIImageIndex, nil
		}
		if peek.SchemaVersion == 2 && peek.Config != nil {
			return types.OCIManifestSchema1, nil
		}
	}
	return "", reasoned(ReasonInvalid, fmt.Errorf("unsupported manifest media type %q (want an OCI or Docker v2 schema 2 image or index)", mt))
}

// imageFacts reads an image manifest's config blob (checked against its
// declared size before fetching) and builds its facts.
func (s *session) imageFacts(ctx context.Context, digest v1.Hash, body []byte, mt types.MediaType) (*image.Facts, int64, error) {
	o := s.r.opts
	m, err := v1.ParseManifest(bytes.NewReader(body))
	if err != nil {
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("parsing manifest %s: %w", digest, err))
	}
	m.MediaType = mt
	if len(m.Layers) > o.MaxLayers {
		return nil, 0, reasoned(ReasonTooLarge, fmt.Errorf("manifest lists %d layers, more than the %d allowed", len(m.Layers), o.MaxLayers))
	}
	switch m.Config.MediaType {
	case types.DockerConfigJSON, types.OCIConfigJSON:
	default:
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("config media type %q is not a container image config", m.Config.MediaType))
	}
	if m.Config.Size > o.MaxConfigBytes {
		return nil, 0, reasoned(ReasonTooLarge, fmt.Errorf("config blob declares %d bytes, more than the %d allowed", m.Config.Size, o.MaxConfigBytes))
	}
	if m.Config.Size < 0 || m.Config.Digest.Algorithm != "sha256" {
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("config descriptor is malformed (size %d, digest %q)", m.Config.Size, m.Config.Digest))
	}
	resp, err := s.do(ctx, http.MethodGet, s.base+"/blobs/"+m.Config.Digest.String(), "")
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	// The body is in memory from here until the facts are built: charge it
	// to the process-wide bound, waiting no longer than the context.
	charge := min(configCharge(m.Config.Size), o.MaxConfigBytesInFlight)
	if err := s.r.configs.Acquire(ctx, charge); err != nil {
		return nil, 0, fmt.Errorf("waiting for room to read config %s: %w", m.Config.Digest, err)
	}
	defer s.r.configs.Release(charge)
	if resp.ContentLength >= 0 && resp.ContentLength != m.Config.Size {
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("config blob %s declares %d bytes but is served with %d", m.Config.Digest, m.Config.Size, resp.ContentLength))
	}
	raw, err := readExact(resp.Body, m.Config.Size, "config blob "+m.Config.Digest.String())
	if err != nil {
		return nil, 0, err
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != m.Config.Digest.Hex {
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("config blob %s was served with %d bytes of digest sha256:%s", m.Config.Digest, len(raw), got))
	}
	if err := checkElements(raw, "config "+m.Config.Digest.String()); err != nil {
		return nil, 0, err
	}
	// Decoded in place: v1.ParseConfigFile would buffer a second copy.
	cfg := &v1.ConfigFile{}
	if err := json.Unmarshal(raw, cfg); err != nil {
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("parsing config %s: %w", m.Config.Digest, err))
	}
	switch {
	case len(cfg.History) > o.MaxHistory:
		return nil, 0, reasoned(ReasonTooLarge, fmt.Errorf("config has %d history entries, more than the %d allowed", len(cfg.History), o.MaxHistory))
	case len(cfg.Config.Env) > o.MaxEnvLabels, len(cfg.Config.Labels) > o.MaxEnvLabels:
		return nil, 0, reasoned(ReasonTooLarge, fmt.Errorf("config has %d env entries and %d labels, more than the %d allowed", len(cfg.Config.Env), len(cfg.Config.Labels), o.MaxEnvLabels))
	}
	f, err := image.FromParts(m, cfg)
	if err != nil {
		return nil, 0, reasoned(ReasonInvalid, err)
	}
	f.Digest = digest.String()
	return f, int64(len(raw)), nil
}

// maxElements caps the members and elements of a manifest, index or
// config, counted before it is decoded: JSON as small as "{}," per value
// decodes to structures many times its size. The largest documents
// within the other caps (1000 layers or history entries, env entries and
// labels) hold some 10,000.
const maxElements = 32768

// bytesPerElement is the most one JSON member or element decodes to
// beyond its strings: a history entry, a map entry, a descriptor, and the
// growth of the slice or map holding it.
const bytesPerElement = 160

// configCharge is the memory a config of size bytes may take while read
// and decoded: its body, the strings decoded from it, and the structure of
// at most maxElements values (which takes at least two bytes each).
func configCharge(size int64) int64 {
	return 2*size + min(size/2+1, maxElements)*bytesPerElement
}

// checkElements fails with ReasonTooLarge when a JSON document has more
// than maxElements members and elements. It counts the separators and
// openings outside strings, without decoding; json.Unmarshal validates the
// document afterwards.
func checkElements(doc []byte, what string) error {
	n := 0
	inString, escaped := false, false
	for _, c := range doc {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ',' || c == '[' || c == '{'):
			if n++; n > maxElements {
				return reasoned(ReasonTooLarge, fmt.Errorf("%s has more than %d JSON values", what, maxElements))
			}
		}
	}
	return nil
}

// readExact reads a body that must be n bytes long, into one buffer of
// that size: a longer one is ReasonTooLarge; a shorter one is a transfer
// cut short, unclassified (the caller compares the Content-Length first).
func readExact(r io.Reader, n int64, what string) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return nil, reasoned(ReasonTooLarge, fmt.Errorf("%s is larger than the %d bytes allowed", what, n))
		}
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	var more [1]byte
	if k, _ := io.ReadFull(r, more[:]); k > 0 {
		return nil, reasoned(ReasonTooLarge, fmt.Errorf("%s is larger than the %d bytes it declares", what, n))
	}
	return b, nil
}
