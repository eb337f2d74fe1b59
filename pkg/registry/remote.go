package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"slimgate.dev/slimgate/pkg/egress"
	"slimgate.dev/slimgate/pkg/image"
)

// Options configures a Remote. Zero values mean the safe defaults given
// on each field.
type Options struct {
	// Timeout bounds an Inspect whose context has no deadline (default 10s).
	Timeout time.Duration
	// DialTimeout, TLSHandshakeTimeout and ResponseHeaderTimeout bound the
	// steps of one connection (defaults 3s, 3s, 5s). The context's deadline
	// always wins when it is shorter.
	DialTimeout, TLSHandshakeTimeout, ResponseHeaderTimeout time.Duration
	// Retries is the number of retries of a failed request (default 2),
	// attempted only when they fit in the context's remaining budget.
	// Negative disables retries.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled after
	// (default 100ms).
	RetryBackoff time.Duration

	// MaxManifestBytes caps a manifest or index body (default 4 MiB).
	MaxManifestBytes int64
	// MaxConfigBytes caps a config blob (default 8 MiB).
	MaxConfigBytes int64
	// MaxIndexEntries caps the index entries considered (default 64).
	MaxIndexEntries int
	// MaxPlatforms caps the platforms judged per reference (default 8).
	MaxPlatforms int
	// MaxHistory caps the config's history entries (default 1000).
	MaxHistory int
	// MaxEnvLabels caps the config's env entries and labels, each
	// (default 1000).
	MaxEnvLabels int
	// MaxLayers caps the manifest's layers (default 1000).
	MaxLayers int

	// CacheEntries and CacheBytes bound the facts cache (defaults 4096
	// entries, 64 MiB).
	CacheEntries int
	CacheBytes   int64
	// TagTTL is how long a tag (or a digest checked with one credential
	// scope) stays resolved (default 3m).
	TagTTL time.Duration
	// FailureTTL is how long a failure is remembered per reference and
	// scope (default 10s).
	FailureTTL time.Duration

	// HeadFirst lists registry hosts where even a tag seen for the first
	// time is resolved with a manifest HEAD before the GET (default: Docker
	// Hub, index.docker.io, whose pull limits count GETs, not HEADs; a HEAD
	// that names a digest already cached then saves the GET). Elsewhere a
	// first-seen tag goes straight to the GET it needs anyway.
	HeadFirst []string

	// EgressExempt lists exact "ip:port" addresses the egress guard lets
	// through even when private networks are refused, such as an
	// in-cluster registry mirror.
	EgressExempt []string

	// RootCAs verifies registry certificates; nil means the system pool.
	RootCAs *x509.CertPool

	// BreakerThreshold consecutive failures of one registry within
	// BreakerWindow open its circuit for BreakerCooldown (defaults 5, 1m,
	// 30s).
	BreakerThreshold int
	BreakerWindow    time.Duration
	BreakerCooldown  time.Duration

	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger logs fetches at V(1); the zero Logger discards.
	Logger logr.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	setDur := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	setDur(&o.Timeout, 10*time.Second)
	setDur(&o.DialTimeout, 3*time.Second)
	setDur(&o.TLSHandshakeTimeout, 3*time.Second)
	setDur(&o.ResponseHeaderTimeout, 5*time.Second)
	setDur(&o.RetryBackoff, 100*time.Millisecond)
	setDur(&o.TagTTL, 3*time.Minute)
	setDur(&o.FailureTTL, 10*time.Second)
	setDur(&o.BreakerWindow, time.Minute)
	setDur(&o.BreakerCooldown, 30*time.Second)
	setInt := func(p *int, n int) {
		if *p <= 0 {
			*p = n
		}
	}
	switch {
	case o.Retries == 0:
		o.Retries = 2
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.HeadFirst == nil {
		o.HeadFirst = []string{name.DefaultRegistry}
	}
	setInt(&o.MaxIndexEntries, 64)
	setInt(&o.MaxPlatforms, 8)
	setInt(&o.MaxHistory, 1000)
	setInt(&o.MaxEnvLabels, 1000)
	setInt(&o.MaxLayers, 1000)
	setInt(&o.CacheEntries, 4096)
	setInt(&o.BreakerThreshold, 5)
	if o.MaxManifestBytes <= 0 {
		o.MaxManifestBytes = 4 << 20
	}
	if o.MaxConfigBytes <= 0 {
		o.MaxConfigBytes = 8 << 20
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Remote inspects images in registries. It implements Inspector and is
// safe for concurrent use.
//
// Caching and credential scopes: facts are cached by manifest digest,
// which is content-addressed, and shared across scopes; but a scope is
// only served cached facts for a reference after the registry has shown
// that scope the digest: the tag (or digest) is resolved with the scope's
// own credentials (a manifest HEAD) and remembered per scope for TagTTL.
// So a namespace without credentials for a private image never reads facts
// another namespace fetched. Authenticated transports are cached per
// scope, registry and repository and never shared.
type Remote struct {
	opts     Options
	open     *http.Transport // no address checks (guard off or private networks allowed)
	guarded  *http.Transport // refuses non-public addresses at dial time
	docs     *lru[*document]
	resolved *lru[string]   // digest a reference resolved to, per scope
	seen     *lru[struct{}] // tag references asked about before, any scope
	failures *lru[*InspectionError]
	auth     *lru[http.RoundTripper]
	flight   singleflight.Group
	breaker  *breaker
	metrics  *metrics
	log      logr.Logger
}

var _ Inspector = (*Remote)(nil)

// document is a cached manifest: an image's facts or an index's entries.
type document struct {
	facts   *image.Facts
	entries []v1.Descriptor // index entries, capped
	total   int             // index entries before the cap
}

// NewRemote returns a Remote configured by opts.
func NewRemote(opts Options) (*Remote, error) {
	opts.defaults()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Remote{
		opts:     opts,
		docs:     newLRU[*document](opts.CacheEntries, opts.CacheBytes, opts.Now),
		resolved: newLRU[string](4*opts.CacheEntries, int64(4*opts.CacheEntries)*256, opts.Now),
		seen:     newLRU[struct{}](4*opts.CacheEntries, int64(4*opts.CacheEntries), opts.Now),
		failures: newLRU[*InspectionError](opts.CacheEntries, int64(opts.CacheEntries)*1024, opts.Now),
		auth:     newLRU[http.RoundTripper](1024, 1024, opts.Now),
		breaker:  newBreaker(opts.BreakerThreshold, opts.BreakerWindow, opts.BreakerCooldown, opts.Now),
		metrics:  m,
		log:      opts.Logger,
	}
	r.open = r.newTransport(false)
	r.guarded = r.newTransport(true)
	return r, nil
}

func (r *Remote) newTransport(guard bool) *http.Transport {
	d := &net.Dialer{Timeout: r.opts.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: r.opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   r.opts.TLSHandshakeTimeout,
		ResponseHeaderTimeout: r.opts.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	}
	if guard {
		// Proxies are not used behind the guard: the address checked must
		// be the registry's own.
		d.ControlContext = egress.Control(r.opts.EgressExempt)
	} else {
		t.Proxy = http.ProxyFromEnvironment
	}
	return t
}

// Close releases idle connections.
func (r *Remote) Close() {
	r.open.CloseIdleConnections()
	r.guarded.CloseIdleConnections()
}

// Inspect fetches the facts of req.Reference: the manifest (an index's
// chosen platform manifests) and config blobs, never layers. Failures are
// *InspectionError.
func (r *Remote) Inspect(ctx context.Context, req Request) (*Inspection, error) {
	p, err := r.prepare(req)
	if err != nil {
		return nil, err
	}
	refName, key := p.refName, p.key
	fail := func(reason Reason, err error) (*Inspection, error) {
		return nil, &InspectionError{Reference: refName, Reason: reason, Err: err}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
	}

	if ie, ok := r.failures.get(key); ok {
		return nil, ie
	}
	if !p.revalidate {
		if insp, ok := r.fromCache(req.CredentialScope, refName, p.platforms); ok {
			r.metrics.cache("hit")
			return insp, nil
		}
	}
	r.metrics.cache("miss")

	ch := r.flight.DoChan(key, func() (any, error) {
		return r.fetch(ctx, p, req)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			ie := r.toInspectionError(refName, res.Err)
			if cacheableFailure(ie) {
				r.failures.add(key, ie, 1, r.opts.FailureTTL)
			}
			return nil, ie
		}
		return res.Val.(*Inspection), nil
	case <-ctx.Done():
		return fail(ReasonTimeout, fmt.Errorf("no answer from %s in time: %w", p.host, ctx.Err()))
	}
}

// InspectCached answers req from the caches alone, as Inspect would,
// without any request and without blocking. ok is false when Inspect would
// have to contact the registry (always for a tag with req.Revalidate) or
// would fail; the caller then calls Inspect. The webhook uses it to spare
// warm reviews a goroutine per image.
func (r *Remote) InspectCached(req Request) (insp *Inspection, ok bool) {
	p, err := r.prepare(req)
	if err != nil || p.revalidate {
		return nil, false
	}
	if _, failed := r.failures.get(p.key); failed {
		return nil, false
	}
	if insp, ok = r.fromCache(req.CredentialScope, p.refName, p.platforms); ok {
		r.metrics.cache("hit")
	}
	return insp, ok
}

// prepared is a request checked against the egress rules.
type prepared struct {
	ref       name.Reference
	refName   string
	host      string
	platforms []string
	key       string // singleflight and failure-cache key
	// revalidate: a tag whose remembered resolution must not be trusted
	// (Request.Revalidate).
	revalidate bool
}

// prepare parses a request's reference and platforms and applies the
// egress rules that need no network.
func (r *Remote) prepare(req Request) (prepared, error) {
	ref, err := name.ParseReference(strings.TrimSpace(req.Reference))
	if err != nil {
		return prepared{}, &InspectionError{Reference: req.Reference, Reason: ReasonBadReference, Err: err}
	}
	refName := ref.Name()
	fail := func(reason Reason, err error) (prepared, error) {
		return prepared{}, &InspectionError{Reference: refName, Reason: reason, Err: err}
	}
	host := ref.Context().RegistryStr()
	if err := req.Egress.CheckRegistry(host, r.opts.EgressExempt); err != nil {
		return fail(ReasonEgressRefused, err)
	}
	platforms, err := NormalisePlatforms(req.Platforms)
	if err != nil {
		return fail(ReasonBadReference, err)
	}
	key := strings.Join([]string{req.CredentialScope, refName, strings.Join(platforms, ","), egressKey(req.Egress)}, "\x00")
	_, isTag := ref.(name.Tag)
	return prepared{ref: ref, refName: refName, host: host, platforms: platforms, key: key, revalidate: req.Revalidate && isTag}, nil
}

// cacheableFailure reports whether a failure may be remembered: not those
// caused by the caller's own deadline, which another caller may not share.
func cacheableFailure(ie *InspectionError) bool {
	return ie.Reason != ReasonTimeout
}

// egressKey is the part of the rules that changes what may be fetched.
func egressKey(e EgressRules) string {
	if !e.Enabled {
		return "open|" + strings.Join(e.Insecure, ",")
	}
	return "guard|" + strconv.FormatBool(e.AllowPrivateNetworks) + "|" + strings.Join(e.AllowRegistries, ",") + "|" + strings.Join(e.Insecure, ",")
}

// fromCache serves an inspection without any request when the reference
// was resolved for this scope recently and every document is cached.
func (r *Remote) fromCache(scope, refName string, platforms []string) (*Inspection, bool) {
	digest, ok := r.resolved.get(resolvedKey(scope, refName))
	if !ok {
		return nil, false
	}
	doc, ok := r.docs.get(digest)
	if !ok {
		return nil, false
	}
	insp, picked, err := r.plan(doc, refName, digest, platforms)
	if err != nil {
		return nil, false
	}
	for _, d := range picked {
		child, ok := r.docs.get(d.Digest.String())
		if !ok || child.facts == nil {
			return nil, false
		}
		insp.Images = append(insp.Images, withRef(child.facts, refName, insp.Digest))
	}
	return insp, true
}

// resolvedKey keys Remote.resolved: a reference as one scope resolved it.
func resolvedKey(scope, refName string) string { return scope + "\x00" + refName }

// plan starts the inspection of the document digest names: complete when
// it is an image, otherwise with the index entries still to read (picked).
func (r *Remote) plan(doc *document, refName, digest string, platforms []string) (insp *Inspection, picked []v1.Descriptor, err error) {
	insp = &Inspection{Reference: refName, Digest: digest}
	if doc.facts != nil {
		insp.Images = []*image.Facts{withRef(doc.facts, refName, "")}
		return insp, nil, nil
	}
	picked, insp.Notes, err = r.pickPlatforms(doc, platforms)
	if err != nil {
		return nil, nil, err
	}
	return insp, picked, nil
}

// withRef copies cached facts for one caller. Slices and maps stay shared:
// callers treat facts as read-only.
func withRef(f *image.Facts, ref, indexDigest string) *image.Facts {
	c := *f
	c.Reference = ref
	c.IndexDigest = indexDigest
	return &c
}

// pickPlatforms chooses which entries of a fetched index to judge (see
// SelectPlatforms), noting when the index was longer than the entries kept.
func (r *Remote) pickPlatforms(doc *document, platforms []string) ([]v1.Descriptor, []string, error) {
	picked, notes, err := SelectPlatforms(doc.entries, platforms, r.opts.MaxPlatforms)
	if err != nil {
		return nil, nil, err
	}
	if doc.total > len(doc.entries) {
		notes = append([]string{fmt.Sprintf("the index lists %d entries; only the first %d were considered", doc.total, len(doc.entries))}, notes...)
	}
	return picked, notes, nil
}
