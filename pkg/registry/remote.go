package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"slimgate.dev/slimgate/pkg/egress"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/mirrors"
	"slimgate.dev/slimgate/pkg/policy"
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
	// MaxIndexEntries caps the entries of an index (default
	// DefaultMaxIndexEntries); more is ReasonTooLarge.
	MaxIndexEntries int
	// MaxPlatforms caps the images of an index judged per reference
	// (default DefaultMaxPlatforms); more is ReasonTooLarge (see
	// SelectPlatforms).
	MaxPlatforms int
	// MaxHistory caps the config's history entries (default 1000).
	MaxHistory int
	// MaxEnvLabels caps the config's env entries and labels, each
	// (default 1000).
	MaxEnvLabels int
	// MaxLayers caps the manifest's layers (default 1000).
	MaxLayers int
	// MaxConfigBytesInFlight bounds, across every inspection of the
	// Remote, the memory config blobs being read and decoded may take
	// (default 64 MiB): each charges what its declared size may cost from
	// its response's arrival until its facts are built (configCharge), and
	// an inspection waits for room within its context's deadline.
	MaxConfigBytesInFlight int64

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

	// Mirrors are the registry mirrors of the nodes' container runtime
	// (package mirrors): a reference to a mirrored registry is read from
	// its mirror endpoints in order, then from the registry unless
	// fallback is off. Each endpoint is contacted with the credentials
	// Request.Keychain holds for its own host, under the request's egress
	// rules, behind its own circuit breaker; documents stay keyed by the
	// upstream repository and digest. Mirror hosts get their own value of
	// the registry metric label. Nil: no mirrors.
	Mirrors *mirrors.Table

	// RootCAs verifies registry certificates; nil means the system pool.
	RootCAs *x509.CertPool
	// HostAliases maps a "host:port" about to be dialled to the "ip:port"
	// dialled instead, as /etc/hosts entries do (tests point cloud
	// registry names at loopback servers). The egress guard checks the
	// address dialled. No flag sets it.
	HostAliases map[string]string

	// BreakerThreshold consecutive failures of one registry within
	// BreakerWindow open its circuit for BreakerCooldown (defaults 5, 1m,
	// 30s).
	BreakerThreshold int
	BreakerWindow    time.Duration
	BreakerCooldown  time.Duration

	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// MetricHosts names the registry hosts, besides well-known public
	// registries, that get their own value of the registry label of
	// slimgate_registry_requests_total; every other host counts as
	// "other". Remote.SetMetricHosts replaces the list.
	MetricHosts []string
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
	setInt(&o.MaxIndexEntries, DefaultMaxIndexEntries)
	setInt(&o.MaxPlatforms, DefaultMaxPlatforms)
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
	if o.MaxConfigBytesInFlight <= 0 {
		o.MaxConfigBytesInFlight = 64 << 20
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
// Caching and credential scopes: facts are cached by registry, repository
// and manifest digest, and shared across scopes; but a scope is only
// served cached facts for a reference after that registry has shown that
// scope the digest in that repository: the tag (or digest) is resolved
// with the scope's own credentials (a manifest HEAD naming the digest, or
// the manifest itself) and remembered per scope for TagTTL. So a
// namespace without credentials for a private image never reads facts
// another namespace fetched, and no registry can claim another's content
// by naming its digest. Authenticated transports are cached per scope,
// registry and repository and never shared.
type Remote struct {
	opts     Options
	open     *http.Transport // no address checks (guard off or private networks allowed)
	guarded  *http.Transport // refuses non-public addresses at dial time
	docs     *lru[*document] // by docKey
	resolved *lru[string]    // digest a reference resolved to, per scope
	seen     *lru[struct{}]  // tag references asked about before, any scope
	failures *lru[*InspectionError]
	auth     *lru[authEntry]
	flight   singleflight.Group
	breaker  *breaker
	metrics  *metrics
	log      logr.Logger
	configs  *semaphore.Weighted // MaxConfigBytesInFlight
}

var _ Inspector = (*Remote)(nil)

// document is a cached manifest: an image's facts or an index's entries.
type document struct {
	facts   *image.Facts
	entries []v1.Descriptor // index entries
}

// NewRemote returns a Remote configured by opts.
func NewRemote(opts Options) (*Remote, error) {
	opts.defaults()
	m, err := newMetrics(opts.Registerer, slices.Concat(opts.MetricHosts, opts.Mirrors.EndpointHosts()))
	if err != nil {
		return nil, err
	}
	// Every cache is charged the bytes its keys and values hold. Besides
	// the facts cache (CacheBytes), each memo holds at most 1 KiB per
	// facts entry (4 MiB with the defaults), the transports 8 MiB.
	memoBytes := int64(opts.CacheEntries) << 10
	r := &Remote{
		opts:     opts,
		docs:     newLRU[*document](opts.CacheEntries, opts.CacheBytes, opts.Now, nil),
		resolved: newLRU[string](4*opts.CacheEntries, memoBytes, opts.Now, nil),
		seen:     newLRU[struct{}](4*opts.CacheEntries, memoBytes, opts.Now, nil),
		failures: newLRU[*InspectionError](opts.CacheEntries, memoBytes, opts.Now, nil),
		auth:     newLRU(1024, 8<<20, opts.Now, func(e authEntry) int64 { return e.size }),
		breaker:  newBreaker(opts.BreakerThreshold, opts.BreakerWindow, opts.BreakerCooldown, opts.Now),
		metrics:  m,
		log:      opts.Logger,
		configs:  semaphore.NewWeighted(opts.MaxConfigBytesInFlight),
	}
	r.open = r.newTransport(false)
	r.guarded = r.newTransport(true)
	return r, nil
}

func (r *Remote) newTransport(guard bool) *http.Transport {
	d := &net.Dialer{Timeout: r.opts.DialTimeout, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if aliases := r.opts.HostAliases; len(aliases) > 0 {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := aliases[addr]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	t := &http.Transport{
		DialContext:           dial,
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

// SetMetricHosts replaces Options.MetricHosts: the registry hosts that,
// besides well-known public registries, get their own value of the
// registry label. The webhook names the hosts its policies name.
// The hosts of mirror endpoints (Options.Mirrors) stay named.
func (r *Remote) SetMetricHosts(hosts []string) {
	r.metrics.setHosts(slices.Concat(hosts, r.opts.Mirrors.EndpointHosts()))
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
		if insp, ok := r.fromCache(req.CredentialScope, p); ok {
			r.metrics.cache("hit")
			return insp, nil
		}
	}
	r.metrics.cache("miss")

	// Callers of one reference share one fetch, run with the context of
	// the caller that started it. When that caller's deadline ends it, the
	// others with time left start (or join) another.
	for round := 1; ; round++ {
		if err := ctx.Err(); err != nil {
			return fail(ReasonTimeout, fmt.Errorf("no time left to ask %s: %w", p.host, err))
		}
		ch := r.flight.DoChan(key, func() (any, error) {
			insp, err := r.fetch(ctx, p, req)
			if err != nil && ctx.Err() != nil {
				err = &cutShort{err}
			}
			return insp, err
		})
		select {
		case res := <-ch:
			if res.Err == nil {
				return res.Val.(*Inspection), nil
			}
			var cut *cutShort
			if errors.As(res.Err, &cut) && ctx.Err() == nil && round < maxFlightRounds {
				continue
			}
			ie := r.toInspectionError(refName, res.Err)
			if cut == nil && cacheableFailure(ie) {
				r.failures.add(key, detached(ie), r.opts.FailureTTL)
			}
			return nil, ie
		case <-ctx.Done():
			return fail(ReasonTimeout, fmt.Errorf("no answer from %s in time: %w", p.host, ctx.Err()))
		}
	}
}

// maxFlightRounds bounds how often a caller starts or joins another fetch
// of one reference after the caller that led the last one gave up.
const maxFlightRounds = 4

// cutShort marks a fetch ended by the deadline or cancellation of the
// caller whose context it ran with: not an answer for anyone else.
type cutShort struct{ err error }

func (e *cutShort) Error() string { return e.err.Error() }
func (e *cutShort) Unwrap() error { return e.err }

// detached copies a failure with its message only, so a remembered
// failure holds no request, response or context of the fetch.
func detached(ie *InspectionError) *InspectionError {
	c := *ie
	if ie.Err != nil {
		c.Err = errors.New(ie.Err.Error())
	}
	return &c
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
	if insp, ok = r.fromCache(req.CredentialScope, p); ok {
		r.metrics.cache("hit")
	}
	return insp, ok
}

// prepared is a request checked against the egress rules.
type prepared struct {
	ref       name.Reference
	refName   string
	host      string
	repo      string // registry/repository
	platforms []string
	key       string // singleflight and failure-cache key
	// revalidate: a tag whose remembered resolution must not be trusted
	// (Request.Revalidate).
	revalidate bool
}

// MaxReferenceBytes is the longest image reference inspected. Kubernetes
// sets no limit; registries' repository names stay far below it.
const MaxReferenceBytes = 4 << 10

// prepare parses a request's reference and platforms and applies the
// egress rules that need no network. A reference longer than
// MaxReferenceBytes is refused before anything copies it.
func (r *Remote) prepare(req Request) (prepared, error) {
	if n := len(req.Reference); n > MaxReferenceBytes {
		return prepared{}, &InspectionError{Reference: policy.Truncate(req.Reference, 80), Reason: ReasonBadReference,
			Err: fmt.Errorf("the image reference is %d bytes long, longer than the %d bytes allowed", n, MaxReferenceBytes)}
	}
	ref := req.Parsed
	if ref == nil {
		var err error
		if ref, err = name.ParseReference(strings.TrimSpace(req.Reference)); err != nil {
			return prepared{}, &InspectionError{Reference: req.Reference, Reason: ReasonBadReference, Err: err}
		}
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
	return prepared{ref: ref, refName: refName, host: host, repo: ref.Context().Name(), platforms: platforms, key: key, revalidate: req.Revalidate && isTag}, nil
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
func (r *Remote) fromCache(scope string, p prepared) (*Inspection, bool) {
	refName := p.refName
	digest, ok := r.resolved.get(resolvedKey(scope, refName))
	if !ok {
		return nil, false
	}
	doc, ok := r.docs.get(docKey(p.repo, digest))
	if !ok {
		return nil, false
	}
	insp, sel, err := r.plan(doc, refName, digest, p.platforms)
	if err != nil {
		return nil, false
	}
	if doc.facts != nil {
		return insp, true
	}
	read := make([]*image.Facts, 0, len(sel.Entries))
	for _, d := range sel.Entries {
		child, ok := r.docs.get(docKey(p.repo, d.Digest.String()))
		if !ok || child.facts == nil {
			return nil, false
		}
		read = append(read, withRef(child.facts, refName, insp.Digest))
	}
	if insp.Images, err = sel.Judged(read); err != nil {
		return nil, false
	}
	return insp, true
}

// resolvedKey keys Remote.resolved: a reference as one scope resolved it.
func resolvedKey(scope, refName string) string { return scope + "\x00" + refName }

// docKey keys Remote.docs: a manifest digest as one repository of one
// registry (name.Repository.Name) served it.
func docKey(repo, digest string) string { return repo + "@" + digest }

// plan starts the inspection of the document digest names: complete when
// it is an image, otherwise with the index entries still to read (sel).
func (r *Remote) plan(doc *document, refName, digest string, platforms []string) (insp *Inspection, sel Selection, err error) {
	insp = &Inspection{Reference: refName, Digest: digest}
	if doc.facts != nil {
		insp.Images = []*image.Facts{withRef(doc.facts, refName, "")}
		return insp, Selection{}, nil
	}
	sel, err = SelectPlatforms(doc.entries, platforms, r.opts.MaxIndexEntries, r.opts.MaxPlatforms)
	if err != nil {
		return nil, Selection{}, err
	}
	return insp, sel, nil
}

// withRef copies cached facts for one caller. Slices and maps stay shared:
// callers treat facts as read-only.
func withRef(f *image.Facts, ref, indexDigest string) *image.Facts {
	c := *f
	c.Reference = ref
	c.IndexDigest = indexDigest
	return &c
}
