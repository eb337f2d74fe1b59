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
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"slimgate.dev/slimgate/pkg/egress"
	"slimgate.dev/slimgate/pkg/image"
)

// manifestAccept lists the manifest media types we read. Schema 1 is not
// among them: a registry that still serves it gets a clear error.
var manifestAccept = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1),
	string(types.DockerManifestList), string(types.DockerManifestSchema2),
}, ", ")

// reasonedError carries the Reason of a failure found below Inspect.
type reasonedError struct {
	reason Reason
	err    error
}

func (e *reasonedError) Error() string { return e.err.Error() }
func (e *reasonedError) Unwrap() error { return e.err }

func reasoned(r Reason, err error) error { return &reasonedError{reason: r, err: err} }

// Reasoned marks err with the Reason an inspection fails for. The mark
// survives wrapping with %w: ReasonOf finds it, and Remote reports it as
// the InspectionError's Reason. Other sources of facts (package local)
// mark their failures with it.
func Reasoned(r Reason, err error) error { return reasoned(r, err) }

// ReasonOf returns the Reason err (or an error it wraps) was marked with
// by Reasoned, if any.
func ReasonOf(err error) (Reason, bool) {
	var re *reasonedError
	if errors.As(err, &re) {
		return re.reason, true
	}
	return "", false
}

// statusError is an unexpected HTTP status from a registry.
type statusError struct {
	method, url string
	code        int
	detail      string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("%s %s: %s", e.method, e.url, http.StatusText(e.code))
	if e.code == 0 || http.StatusText(e.code) == "" {
		msg = fmt.Sprintf("%s %s: status %d", e.method, e.url, e.code)
	}
	if e.detail != "" {
		msg += ": " + e.detail
	}
	if e.code == http.StatusUnauthorized || e.code == http.StatusForbidden {
		msg += " (credentials missing or not accepted)"
	}
	return msg
}

// session is one fetch: a reference, its registry client and the rules.
type session struct {
	r      *Remote
	host   string
	client *http.Client
	base   string // scheme://host/v2/repo
}

// fetch does the network part of Inspect for one prepared reference.
func (r *Remote) fetch(ctx context.Context, p prepared, req Request) (*Inspection, error) {
	host := p.host
	if ok, until := r.breaker.allow(host); !ok {
		r.metrics.request(host, "breaker_open")
		return nil, reasoned(ReasonUnavailable, fmt.Errorf("registry %s failed repeatedly; not contacted until %s", host, until.Format(time.RFC3339)))
	}
	start := r.opts.Now()
	insp, err := r.fetchOnce(ctx, p, req)
	r.breaker.record(host, err != nil && countsAgainstRegistry(r.toInspectionError("", err).Reason))
	if err != nil {
		r.log.V(1).Info("image inspection failed", "reference", p.refName, "error", err.Error())
	} else {
		r.log.V(1).Info("image inspected", "reference", p.refName, "digest", insp.Digest, "platforms", len(insp.Images), "elapsed", r.opts.Now().Sub(start))
	}
	return insp, err
}

// countsAgainstRegistry reports whether a failure says the registry is
// unwell, as opposed to the image or the credentials being wrong.
func countsAgainstRegistry(reason Reason) bool {
	return reason == ReasonTimeout || reason == ReasonUnavailable
}

func (r *Remote) fetchOnce(ctx context.Context, p prepared, req Request) (*Inspection, error) {
	s, err := r.session(ctx, p.ref.Context(), req)
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
	r.resolved.add(key, digest.String(), int64(len(key)+95), r.opts.TagTTL)

	insp, picked, err := r.plan(doc, refName, digest.String(), p.platforms)
	if err != nil || doc.facts != nil { // an image: insp is complete
		return insp, err
	}
	insp.Images = make([]*image.Facts, len(picked))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, d := range picked {
		g.Go(func() error {
			if d.Size > r.opts.MaxManifestBytes {
				return reasoned(ReasonTooLarge, fmt.Errorf("manifest %s declares %d bytes, more than the %d allowed", d.Digest, d.Size, r.opts.MaxManifestBytes))
			}
			child, err := s.document(gctx, d.Digest, nil, "")
			if err != nil {
				return fmt.Errorf("platform %s: %w", platformOf(d.Platform), err)
			}
			if child.facts == nil {
				return reasoned(ReasonInvalid, fmt.Errorf("index entry %s is an index, not an image", d.Digest))
			}
			insp.Images[i] = withRef(child.facts, refName, insp.Digest)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return insp, nil
}

// session returns the authenticated client for one repository and scope.
// The ggcr transport (ping, token) is cached per scope, registry,
// repository and egress mode: never shared across credential scopes.
func (r *Remote) session(ctx context.Context, repo name.Repository, req Request) (*session, error) {
	host := repo.RegistryStr()
	insecure := req.Egress.IsInsecure(host)
	guard := req.Egress.Guarded()
	key := strings.Join([]string{req.CredentialScope, host, repo.RepositoryStr(), strconv.FormatBool(insecure), strconv.FormatBool(guard)}, "\x00")
	tr, ok := r.auth.get(key)
	if !ok {
		base := r.open
		if guard {
			base = r.guarded
		}
		inner := &capBodies{
			inner: egress.Transport(base, req.Egress),
			max:   max(r.opts.MaxManifestBytes, r.opts.MaxConfigBytes) + 1,
		}
		var regOpts []name.Option
		if insecure {
			regOpts = append(regOpts, name.Insecure)
		}
		reg, err := name.NewRegistry(host, regOpts...)
		if err != nil {
			return nil, reasoned(ReasonBadReference, err)
		}
		kc := req.Keychain
		if kc == nil {
			kc = authn.NewMultiKeychain()
		}
		auth, err := authn.Resolve(ctx, kc, repo)
		if err != nil {
			return nil, reasoned(ReasonUnauthorized, fmt.Errorf("resolving credentials for %s: %w", host, err))
		}
		t, err := transport.NewWithContext(ctx, reg, auth, inner, []string{repo.Scope(transport.PullScope)})
		r.metrics.request(host, outcomeOf(err))
		if err != nil {
			return nil, fmt.Errorf("contacting registry %s: %w", host, err)
		}
		tr = t
		r.auth.add(key, tr, 1, 5*time.Minute)
	}
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	return &session{
		r:    r,
		host: host,
		client: &http.Client{Transport: tr, CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if guard {
				return egress.CheckHost(next.URL.Host, r.opts.EgressExempt)
			}
			return nil
		}},
		base: fmt.Sprintf("%s://%s/v2/%s", scheme, host, repo.RepositoryStr()),
	}, nil
}

// resolve finds the digest a reference names. A tag seen before, or any
// tag on a HeadFirst registry (Docker Hub), is resolved with a HEAD (cheap,
// and not counted by Docker Hub's pull limits), falling back to a GET when
// HEAD is refused or gives no digest; elsewhere a tag seen for the first
// time goes to the GET directly. The GET's body is
// then returned for reuse. A digest reference is checked with a HEAD when its
// document is already cached, so this scope proves its access.
func (s *session) resolve(ctx context.Context, ref name.Reference, refName string) (v1.Hash, []byte, types.MediaType, error) {
	if d, ok := ref.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return v1.Hash{}, nil, "", reasoned(ReasonBadReference, err)
		}
		if _, cached := s.r.docs.get(h.String()); !cached {
			return h, nil, "", nil // the GET by digest checks access itself
		}
		got, _, err := s.head(ctx, h.String())
		if err != nil && !headUnsupported(err) {
			return v1.Hash{}, nil, "", err
		}
		if err != nil { // the GET proves access instead
			body, mt, _, err := s.getManifest(ctx, h.String())
			return h, body, mt, err
		}
		if got != (v1.Hash{}) && got != h {
			return v1.Hash{}, nil, "", reasoned(ReasonInvalid, fmt.Errorf("registry answered digest %s for %s", got, h))
		}
		return h, nil, "", nil
	}
	tag := ref.Identifier()
	// A reference asked about before is checked with a HEAD: its manifest
	// is likely cached, and then the HEAD is all it costs. One seen for the
	// first time goes straight to the GET it will need anyway, saving a
	// round trip on every cold inspection.
	_, seen := s.r.seen.get(refName)
	if !seen {
		s.r.seen.add(refName, struct{}{}, 1, 0)
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

// capBodies sits between ggcr's transport and the egress guard: it caps
// every response body so error and token bodies stay bounded whatever
// reads them.
type capBodies struct {
	inner http.RoundTripper
	max   int64
}

func (c *capBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: c.max}
	return resp, nil
}

// errBodyTooLarge is returned by a capped body read past its limit.
var errBodyTooLarge = errors.New("response body exceeds the size limit")

// cappedBody fails a read once more than left bytes were read, whatever the
// Content-Length said.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// readBody reads at most limit bytes; more is ReasonTooLarge.
func readBody(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit || errors.Is(err, errBodyTooLarge) {
		return nil, reasoned(ReasonTooLarge, fmt.Errorf("%s is larger than the %d bytes allowed", what, limit))
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return b, nil
}

func contentType(resp *http.Response) types.MediaType {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return types.MediaType(mt)
}

// document returns the parsed manifest with the given digest, from the
// cache or the registry. body, when not nil, is that manifest already read.
func (s *session) document(ctx context.Context, digest v1.Hash, body []byte, mt types.MediaType) (*document, error) {
	if doc, ok := s.r.docs.get(digest.String()); ok {
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
	kind, err := manifestKind(body, mt)
	if err != nil {
		return nil, err
	}
	var doc *document
	size := int64(len(body))
	if kind.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(body))
		if err != nil {
			return nil, reasoned(ReasonInvalid, fmt.Errorf("parsing index %s: %w", digest, err))
		}
		doc = &document{entries: idx.Manifests, total: len(idx.Manifests)}
		if len(doc.entries) > s.r.opts.MaxIndexEntries {
			doc.entries = doc.entries[:s.r.opts.MaxIndexEntries]
		}
		size = int64(len(doc.entries)) * 512
	} else {
		facts, cfgSize, err := s.imageFacts(ctx, digest, body, kind)
		if err != nil {
			return nil, err
		}
		doc = &document{facts: facts}
		size += cfgSize
	}
	s.r.docs.add(digest.String(), doc, size, 0)
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
	raw, err := readBody(resp.Body, m.Config.Size, "config blob "+m.Config.Digest.String())
	if err != nil {
		return nil, 0, err
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); int64(len(raw)) != m.Config.Size || got != m.Config.Digest.Hex {
		return nil, 0, reasoned(ReasonInvalid, fmt.Errorf("config blob %s was served with %d bytes of digest sha256:%s", m.Config.Digest, len(raw), got))
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
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

// do sends one request, retrying transient failures (network errors, 5xx,
// 429) only while the retry fits in the context's remaining budget. A
// non-2xx answer is a *statusError.
func (s *session) do(ctx context.Context, method, url, accept string) (*http.Response, error) {
	backoff := s.r.opts.RetryBackoff
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return nil, reasoned(ReasonBadReference, err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := s.client.Do(req)
		if err == nil && resp.StatusCode/100 == 2 {
			s.r.metrics.request(s.host, "ok")
			return resp, nil
		}
		var wait time.Duration
		retryable := false
		if err != nil {
			s.r.metrics.request(s.host, outcomeOf(err))
			retryable = ctx.Err() == nil && !errors.Is(err, egress.ErrRefused) && !errors.Is(err, errBodyTooLarge)
			wait = backoff
		} else {
			detail := errorDetail(resp)
			resp.Body.Close()
			se := &statusError{method: method, url: url, code: resp.StatusCode, detail: detail}
			err = se
			s.r.metrics.request(s.host, outcomeOf(err))
			switch {
			case resp.StatusCode == http.StatusTooManyRequests:
				retryable, wait = true, backoff
				if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
					wait = ra
				}
				if !fits(ctx, wait) || attempt >= s.r.opts.Retries {
					return nil, reasoned(ReasonRateLimited, fmt.Errorf("%w (retry after %s does not fit in the time left)", err, wait))
				}
			case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
				retryable, wait = true, backoff
			}
		}
		if !retryable || attempt >= s.r.opts.Retries || !fits(ctx, wait) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
}

// fits reports whether waiting d still leaves time for a request (a
// quarter second) before the context's deadline. Deadlines are wall-clock
// times, so this uses the real clock, not Options.Now.
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d+250*time.Millisecond
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// errorDetail reads a bounded part of an error body for the message.
func errorDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var reg struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(b, &reg) == nil && len(reg.Errors) > 0 {
		var parts []string
		for _, e := range reg.Errors {
			parts = append(parts, strings.TrimSpace(e.Code+" "+e.Message))
		}
		return truncate(strings.Join(parts, "; "), 200)
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// toInspectionError classifies any fetch error.
func (r *Remote) toInspectionError(ref string, err error) *InspectionError {
	if ie, ok := AsInspectionError(err); ok {
		return ie
	}
	return &InspectionError{Reference: ref, Reason: reasonOf(err), Err: err}
}

func reasonOf(err error) Reason {
	var re *reasonedError
	var se *statusError
	var te *transport.Error
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.reason
	case errors.Is(err, egress.ErrRefused):
		return ReasonEgressRefused
	case errors.Is(err, errBodyTooLarge):
		return ReasonTooLarge
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonTimeout
	case errors.As(err, &se):
		return reasonOfStatus(se.code)
	case errors.As(err, &te):
		return reasonOfStatus(te.StatusCode)
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	}
	return ReasonUnavailable
}

func reasonOfStatus(code int) Reason {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ReasonUnauthorized
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusTooManyRequests:
		return ReasonRateLimited
	}
	return ReasonUnavailable
}

// outcomeOf names a request's outcome for the requests metric.
func outcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	switch reasonOf(err) {
	case ReasonUnauthorized:
		return "unauthorized"
	case ReasonNotFound:
		return "not_found"
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonTimeout:
		return "timeout"
	case ReasonEgressRefused:
		return "refused"
	case ReasonTooLarge:
		return "too_large"
	}
	return "error"
}
