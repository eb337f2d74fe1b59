package cloudauth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/singleflight"

	"slimgate.dev/slimgate/pkg/registry"
)

// Provider names, as the webhook's --registry-auth-providers flag takes
// them.
const (
	ECR    = "ecr"
	Google = "gcr"
	ACR    = "acr"
)

// Providers lists the provider names New accepts.
func Providers() []string { return []string{ECR, Google, ACR} }

// Options configures a Keychain. Zero values mean the defaults given on
// each field.
type Options struct {
	// Transport, when set, carries every request to the providers' token
	// endpoints and ACR's token exchange (tests route the clouds' host
	// names to fakes with it). Nil: each SDK's own HTTP client, which
	// honours the environment's proxy settings (and the AWS SDK's
	// AWS_CA_BUNDLE); FetchTimeout bounds its requests.
	Transport http.RoundTripper
	// FetchTimeout bounds one token fetch (default 15s). A fetch is shared
	// by every caller waiting for that token; each caller stops waiting
	// when its own context ends, and the token is kept for the next.
	FetchTimeout time.Duration
	// FailureTTL is how long a failed fetch is remembered before the next
	// caller tries again (default 5s).
	FailureTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 15 * time.Second
	}
	if o.FailureTTL <= 0 {
		o.FailureTTL = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// client is the HTTP client of the token requests that are not an SDK's
// own: Transport, or the default one, bounded by FetchTimeout.
func (o *Options) client() *http.Client {
	return &http.Client{Transport: o.Transport, Timeout: o.FetchTimeout}
}

// provider fetches the registry credentials of one cloud.
type provider interface {
	// name is the provider's name (ECR, Google, ACR).
	name() string
	// key names the credential that serves the registry host name (no
	// port), "" when it is not one of the provider's registries. Hosts with
	// the same key share the credential.
	key(hostname string) string
	// fetch asks the cloud for a credential for the registry host name
	// (no port: the credential is shared by every port, so none may
	// decide it).
	fetch(ctx context.Context, hostname string) (credential, error)
}

// credential is a registry user name and password, valid until expires.
type credential struct {
	username, password string
	expires            time.Time
}

// cached is what a key's last fetch brought: a credential (used until
// refresh) or the error (remembered until refresh).
type cached struct {
	cred    credential
	err     error
	refresh time.Time
}

// maxCached bounds the credentials kept: one per ECR region, per ACR
// registry, and one for Google.
const maxCached = 256

// Keychain is an authn.Keychain that answers with the webhook's cloud
// identity for the registries of the providers it was built with, and
// anonymously for every other registry. It is safe for concurrent use.
type Keychain struct {
	providers []provider
	opts      Options
	scope     string
	flight    singleflight.Group

	mu    sync.Mutex
	creds map[string]cached // by provider name and key
}

var _ authn.ContextKeychain = (*Keychain)(nil)

// New returns a Keychain over the named providers (Providers; duplicates
// are ignored). It reads each SDK's configuration from the environment
// but contacts no token endpoint: the first image of a provider's
// registries does.
func New(ctx context.Context, names []string, opts Options) (*Keychain, error) {
	opts.defaults()
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	if len(names) == 0 {
		return nil, fmt.Errorf("no registry auth provider named (known: %s)", strings.Join(Providers(), ", "))
	}
	for _, n := range names {
		if !slices.Contains(Providers(), n) {
			return nil, fmt.Errorf("unknown registry auth provider %q (known: %s)", n, strings.Join(Providers(), ", "))
		}
	}
	providers := make([]provider, 0, len(names))
	for _, n := range names {
		var p provider
		var err error
		switch n {
		case ECR:
			p, err = newECR(ctx, opts)
		case Google:
			p = newGoogle(opts)
		case ACR:
			p, err = newACR(opts)
		}
		if err != nil {
			return nil, fmt.Errorf("setting up the %s provider: %w", n, err)
		}
		providers = append(providers, p)
	}
	return newKeychain(providers, opts), nil
}

// newKeychain returns a Keychain over providers; opts has its defaults.
func newKeychain(providers []provider, opts Options) *Keychain {
	names := make([]string, 0, len(providers))
	for _, p := range providers {
		names = append(names, p.name())
	}
	return &Keychain{providers: providers, opts: opts, creds: map[string]cached{}, scope: "cloud:" + strings.Join(names, ",")}
}

// Scope names the credential set of the keychain, for
// registry.Request.CredentialScope: the same for every request, since
// the credentials are the webhook's own.
func (k *Keychain) Scope() string { return k.scope }

// KeychainFunc returns the registry credentials of a Pod: its namespace,
// service account and pull secret names in; a keychain and the credential
// scope it stands for (registry.Request.CredentialScope) out. It is
// admission.KeychainFunc.
type KeychainFunc = func(ctx context.Context, namespace, serviceAccount string, pullSecrets []string) (authn.Keychain, string, error)

// After returns a KeychainFunc that asks pullSecrets (nil: no pull
// secrets) for a Pod's keychain and puts k behind it: a pull secret that
// names a registry wins over the cloud identity, which answers only for
// the registries no pull secret names. The scope names both. An error of
// pullSecrets is returned as it is (the caller then reads anonymously, as
// without cloud credentials).
func (k *Keychain) After(pullSecrets KeychainFunc) KeychainFunc {
	return func(ctx context.Context, namespace, serviceAccount string, names []string) (authn.Keychain, string, error) {
		if pullSecrets == nil {
			return k, k.scope, nil
		}
		kc, scope, err := pullSecrets(ctx, namespace, serviceAccount, names)
		if err != nil {
			return nil, "", err
		}
		kc, scope = k.behind(kc, scope)
		return kc, scope, nil
	}
}

// behind returns a keychain that asks kc first and k only for a registry
// kc has no credentials for, and the credential scope of the pair. An
// empty scope means kc holds no credentials; k alone answers then.
func (k *Keychain) behind(kc authn.Keychain, scope string) (authn.Keychain, string) {
	if kc == nil || scope == "" {
		return k, k.scope
	}
	return authn.NewMultiKeychain(kc, k), scope + "+" + k.scope
}

// Resolve implements authn.Keychain.
func (k *Keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target) //nolint:forbidigo // authn.Keychain's method has no context; ggcr calls ResolveContext
}

// ResolveContext implements authn.ContextKeychain: anonymous for a
// registry no provider serves; otherwise the credential is fetched (or
// taken from the cache) now, so that a provider's failure fails here,
// marked registry.ReasonCredentials. The authenticator returned reads the
// cache again each time it is asked, so a transport that outlives the
// token gets the next one.
func (k *Keychain) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	name := target.RegistryStr() // the providers match host names; a port changes no owner
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	name = lowerASCII(name) // nor does case; Unicode folding would (K, the Kelvin sign, is not k)
	for _, p := range k.providers {
		key := p.key(name)
		if key == "" {
			continue
		}
		a := &authenticator{k: k, p: p, key: key, host: name}
		if _, err := a.AuthorizationContext(ctx); err != nil {
			return nil, err
		}
		return a, nil
	}
	return authn.Anonymous, nil
}

// lowerASCII folds the ASCII letters of s to lower case, and only those.
func lowerASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// authenticator answers with the cached credential of one provider key.
type authenticator struct {
	k         *Keychain
	p         provider
	key, host string
}

// Authorization implements authn.Authenticator.
func (a *authenticator) Authorization() (*authn.AuthConfig, error) {
	return a.AuthorizationContext(context.Background()) //nolint:forbidigo // authn.Authenticator's method has no context; ggcr calls AuthorizationContext
}

// AuthorizationContext implements authn.ContextAuthenticator.
func (a *authenticator) AuthorizationContext(ctx context.Context) (*authn.AuthConfig, error) {
	c, err := a.k.credential(ctx, a.p, a.key, a.host)
	if err != nil {
		return nil, err
	}
	return &authn.AuthConfig{Username: c.username, Password: c.password}, nil
}

// credential returns the credential for a provider's key, fetching it
// when none is cached or the cached one is due for refresh.
func (k *Keychain) credential(ctx context.Context, p provider, key, host string) (credential, error) {
	id := p.name() + "\x00" + key
	k.mu.Lock()
	c, ok := k.creds[id]
	k.mu.Unlock()
	if ok && k.opts.Now().Before(c.refresh) {
		return c.cred, c.err
	}
	// The fetch outlives a caller that stops waiting, so that the token
	// it brings serves the next one; its own timeout bounds it.
	fetchCtx := context.WithoutCancel(ctx)
	ch := k.flight.DoChan(id, func() (any, error) {
		return k.fetch(fetchCtx, p, id, host, c), nil
	})
	select {
	case res := <-ch:
		got := res.Val.(cached)
		return got.cred, got.err
	case <-ctx.Done():
		return credential{}, registry.Reasoned(registry.ReasonCredentials,
			fmt.Errorf("%s: no credentials for %s in time: %w", p.name(), host, ctx.Err()))
	}
}

// fetch asks the provider, caches the answer and returns it. When the
// fetch fails while the previous credential is still valid, that one is
// kept (and the fetch retried after FailureTTL).
func (k *Keychain) fetch(ctx context.Context, p provider, id, host string, prev cached) cached {
	ctx, cancel := context.WithTimeout(ctx, k.opts.FetchTimeout)
	defer cancel()
	cred, err := p.fetch(ctx, host)
	now := k.opts.Now()
	var c cached
	switch {
	case err == nil:
		c = cached{cred: cred, refresh: refreshAt(now, cred.expires)}
	case prev.err == nil && now.Before(prev.cred.expires):
		c = cached{cred: prev.cred, refresh: now.Add(k.opts.FailureTTL)}
	default:
		c = cached{err: registry.Reasoned(registry.ReasonCredentials, fmt.Errorf("%s: %w", p.name(), err)),
			refresh: now.Add(k.opts.FailureTTL)}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.creds[id]; !ok && len(k.creds) >= maxCached {
		k.evict(now)
	}
	k.creds[id] = c
	return c
}

// evict makes room in the cache: the entries due for refresh go, and if
// none is, one other. Called with k.mu held.
func (k *Keychain) evict(now time.Time) {
	for id, c := range k.creds {
		if !now.Before(c.refresh) {
			delete(k.creds, id)
		}
	}
	for id := range k.creds {
		if len(k.creds) < maxCached {
			return
		}
		delete(k.creds, id)
	}
}

// maxRefreshLead is how long before it expires a credential is fetched
// again at most: more than the registry client keeps an authenticated
// transport (five minutes), so a transport never starts with a credential
// about to expire.
const maxRefreshLead = 10 * time.Minute

// refreshAt is when a credential fetched at now that expires at expires
// is fetched again: maxRefreshLead before it expires, or half way through
// its life when that is shorter. A credential without an expiry is kept
// an hour.
func refreshAt(now, expires time.Time) time.Time {
	if expires.IsZero() {
		return now.Add(time.Hour)
	}
	return expires.Add(-min(maxRefreshLead, expires.Sub(now)/2))
}
