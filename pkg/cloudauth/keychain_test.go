package cloudauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"slimgate.dev/slimgate/pkg/registry"
)

// stubProvider serves the hosts ending in suffix, one credential per host,
// and counts its fetches.
type stubProvider struct {
	suffix   string
	lifetime time.Duration
	now      func() time.Time
	// block, when set, holds each fetch until it is closed.
	block chan struct{}

	mu      sync.Mutex
	fetches []string
	err     error
	refuse  string // a host whose fetches fail
}

func (p *stubProvider) name() string { return "stub" }

func (p *stubProvider) key(host string) string {
	if strings.HasSuffix(host, p.suffix) {
		return host
	}
	return ""
}

func (p *stubProvider) fetch(ctx context.Context, host string) (credential, error) {
	if p.block != nil {
		select {
		case <-p.block:
		case <-ctx.Done():
			return credential{}, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetches = append(p.fetches, host)
	if p.err != nil {
		return credential{}, p.err
	}
	if host == p.refuse {
		return credential{}, fmt.Errorf("nothing answers at %s", host)
	}
	return credential{username: "user", password: fmt.Sprintf("token-%d", len(p.fetches)), expires: p.now().Add(p.lifetime)}, nil
}

func (p *stubProvider) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *stubProvider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fetches)
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newStub(t *testing.T, lifetime time.Duration) (*Keychain, *stubProvider, *clock) {
	t.Helper()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	p := &stubProvider{suffix: ".cloud.test", lifetime: lifetime, now: c.Now}
	opts := Options{Now: c.Now, FailureTTL: 5 * time.Second}
	opts.defaults()
	return newKeychain([]provider{p}, opts), p, c
}

func repo(t *testing.T, host string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(host + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// password resolves host and returns the password the authenticator gives.
func password(t *testing.T, kc authn.Keychain, host string) (string, error) {
	t.Helper()
	a, err := authn.Resolve(context.Background(), kc, repo(t, host))
	if err != nil {
		return "", err
	}
	if a == authn.Anonymous {
		return "anonymous", nil
	}
	cfg, err := authn.Authorization(context.Background(), a)
	if err != nil {
		return "", err
	}
	return cfg.Password, nil
}

func TestOtherHostsAreAnonymous(t *testing.T) {
	k, p, _ := newStub(t, time.Hour)
	for _, host := range []string{"ghcr.io", "registry.example.test", "cloud.test.evil.example", "cloud.test"} {
		got, err := password(t, k, host)
		if err != nil || got != "anonymous" {
			t.Errorf("%s: got %q, %v; want anonymous", host, got, err)
		}
	}
	if n := p.count(); n != 0 {
		t.Errorf("the provider was asked %d times for hosts it does not serve", n)
	}
	if got, err := password(t, k, "r1.cloud.test"); err != nil || got != "token-1" {
		t.Errorf("own host: got %q, %v; want token-1", got, err)
	}
	// A port changes no owner: the same registry's credential, and a
	// registry first seen with a port is asked for without it.
	if got, err := password(t, k, "r1.cloud.test:443"); err != nil || got != "token-1" {
		t.Errorf("own host with a port: got %q, %v; want its token-1", got, err)
	}
	if got, err := password(t, k, "r2.cloud.test:5000"); err != nil || got != "token-2" || p.fetches[1] != "r2.cloud.test" {
		t.Errorf("another host with a port: got %q, %v after fetches %q", got, err, p.fetches)
	}
}

func TestTokensAreCachedUntilShortlyBeforeExpiry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		reuse    time.Duration // still served from the cache after this
		refetch  time.Duration // fetched again after this
	}{
		{"ECR's twelve hours: 10 minutes early", 12 * time.Hour, 12*time.Hour - 10*time.Minute - time.Second, 12*time.Hour - 10*time.Minute},
		{"a short token: half way", 10 * time.Minute, 5*time.Minute - time.Second, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, p, c := newStub(t, tc.lifetime)
			host := "r1.cloud.test"
			if got, _ := password(t, k, host); got != "token-1" {
				t.Fatalf("first: %q", got)
			}
			c.advance(tc.reuse)
			if got, _ := password(t, k, host); got != "token-1" || p.count() != 1 {
				t.Errorf("at %s: %q after %d fetches; want the cached token-1", tc.reuse, got, p.count())
			}
			c.advance(tc.refetch - tc.reuse)
			if got, _ := password(t, k, host); got != "token-2" || p.count() != 2 {
				t.Errorf("at %s: %q after %d fetches; want a new token-2", tc.refetch, got, p.count())
			}
			// A second registry of the same provider has its own token.
			if got, _ := password(t, k, "r2.cloud.test"); got != "token-3" {
				t.Errorf("second registry: %q, want its own token-3", got)
			}
		})
	}
}

func TestProviderFailure(t *testing.T) {
	k, p, c := newStub(t, time.Hour)
	host := "r1.cloud.test"
	p.setErr(errors.New("token endpoint answered 503"))
	_, err := password(t, k, host)
	if reason, ok := registry.ReasonOf(err); !ok || reason != registry.ReasonCredentials {
		t.Fatalf("error %v has reason %q, want %s", err, reason, registry.ReasonCredentials)
	}
	if !strings.Contains(err.Error(), "stub: token endpoint answered 503") {
		t.Errorf("error %q does not name the provider and its error", err)
	}
	// Remembered for FailureTTL: no second request to a failing endpoint.
	if _, err := password(t, k, host); err == nil || p.count() != 1 {
		t.Errorf("within FailureTTL: %v after %d fetches, want the remembered failure", err, p.count())
	}
	p.setErr(nil)
	c.advance(5 * time.Second)
	if got, err := password(t, k, host); err != nil || got != "token-2" {
		t.Errorf("after FailureTTL: %q, %v; want token-2", got, err)
	}

	// A failed refresh keeps the token that is still valid.
	c.advance(time.Hour - 10*time.Minute)
	p.setErr(errors.New("down"))
	if got, err := password(t, k, host); err != nil || got != "token-2" {
		t.Errorf("refresh failed: %q, %v; want the still valid token-2", got, err)
	}
	c.advance(10 * time.Minute)
	if _, err := password(t, k, host); err == nil {
		t.Error("an expired token was used after the refresh failed")
	}
}

// A caller whose deadline passes stops waiting; the fetch goes on and
// serves the next caller.
func TestCallerDeadlineDoesNotEndTheFetch(t *testing.T) {
	k, p, _ := newStub(t, time.Hour)
	p.block = make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := authn.Resolve(ctx, k, repo(t, "r1.cloud.test"))
	if reason, _ := registry.ReasonOf(err); !errors.Is(err, context.DeadlineExceeded) || reason != registry.ReasonCredentials {
		t.Fatalf("got %v (reason %q), want the deadline as %s", err, reason, registry.ReasonCredentials)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("the caller waited %s past its 50ms deadline", waited)
	}
	close(p.block)
	deadline := time.Now().Add(5 * time.Second)
	for p.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got, err := password(t, k, "r1.cloud.test"); err != nil || got != "token-1" || p.count() != 1 {
		t.Errorf("next caller: %q, %v after %d fetches; want the token the first fetch brought", got, err, p.count())
	}
}

func TestAfterKeepsPullSecretsFirst(t *testing.T) {
	k, p, _ := newStub(t, time.Hour)
	secretsErr := errors.New("reading pull secrets: API server unavailable")
	pullSecrets := func(_ context.Context, namespace, sa string, names []string) (authn.Keychain, string, error) {
		switch {
		case namespace == "broken":
			return nil, "", secretsErr
		case len(names) == 0:
			return authn.NewMultiKeychain(), "", nil // none found
		}
		return staticKeychain{host: "r1.cloud.test", password: "pull-secret"}, namespace + "/abc", nil
	}
	kc, scope, err := k.After(pullSecrets)(context.Background(), "team", "default", []string{"regcred"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "team/abc+cloud:stub"; scope != want {
		t.Errorf("scope %q, want %q", scope, want)
	}
	got := map[string]string{}
	for _, host := range []string{"r1.cloud.test", "r2.cloud.test", "ghcr.io"} {
		pw, err := password(t, kc, host)
		if err != nil {
			t.Fatal(err)
		}
		got[host] = pw
	}
	want := map[string]string{"r1.cloud.test": "pull-secret", "r2.cloud.test": "token-1", "ghcr.io": "anonymous"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("passwords by host (-want +got):\n%s", diff)
	}
	if p.count() != 1 {
		t.Errorf("the provider was asked %d times, want once (r2 only)", p.count())
	}

	// No pull secret found, or pull secrets off: the cloud keychain
	// alone, with its own scope.
	for name, f := range map[string]KeychainFunc{"none found": k.After(pullSecrets), "pull secrets off": k.After(nil)} {
		if kc, scope, err := f(context.Background(), "team", "default", nil); err != nil || kc != authn.Keychain(k) || scope != "cloud:stub" {
			t.Errorf("%s: %T, %q, %v; want the cloud keychain and its scope", name, kc, scope, err)
		}
	}
	if _, _, err := k.After(pullSecrets)(context.Background(), "broken", "default", nil); !errors.Is(err, secretsErr) {
		t.Errorf("pull secrets failing: %v, want their error", err)
	}
}

// staticKeychain answers for one host, as a pull secret does.
type staticKeychain struct{ host, password string }

func (s staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == s.host {
		return &authn.Basic{Username: "u", Password: s.password}, nil
	}
	return authn.Anonymous, nil
}

func TestCacheIsBounded(t *testing.T) {
	k, p, _ := newStub(t, time.Hour)
	for i := range 3 * maxCached {
		if _, err := password(t, k, fmt.Sprintf("r%d.cloud.test", i)); err != nil {
			t.Fatal(err)
		}
	}
	k.mu.Lock()
	n := len(k.creds)
	k.mu.Unlock()
	if n > maxCached || p.count() != 3*maxCached {
		t.Errorf("%d credentials cached after %d fetches, want at most %d", n, p.count(), maxCached)
	}
}

func TestNewRefusesUnknownProviders(t *testing.T) {
	for _, names := range [][]string{nil, {"ecr", "quay"}} {
		if _, err := New(context.Background(), names, Options{}); err == nil || !strings.Contains(err.Error(), "known: ecr, gcr, acr") {
			t.Errorf("New(%q) = %v, want an error listing the known providers", names, err)
		}
	}
}

func TestHostMatching(t *testing.T) {
	g, a, e := &googleProvider{}, &acrProvider{}, &ecrProvider{}
	for _, tc := range []struct {
		host string
		want string // provider that serves it, "" for none
	}{
		{"123456789012.dkr.ecr.us-east-1.amazonaws.com", ECR},
		{"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", ECR},
		{"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ECR},
		{"public.ecr.aws", ""},
		{"dkr.ecr.us-east-1.amazonaws.com", ""},
		{"123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example", ""},
		{"gcr.io", Google},
		{"eu.gcr.io", Google},
		{"europe-docker.pkg.dev", Google},
		{"gcr.io.evil.example", ""},
		{"evilgcr.io", ""},
		{"myreg.azurecr.io", ACR},
		{"myreg.azurecr.cn", ACR},
		{"myreg.azurecr.us", ACR},
		{"azurecr.io", ""},
		{".azurecr.io", ""},
		{"myreg.azurecr.io.evil.example", ""},
		{"ghcr.io", ""},
		{"docker.io", ""},
	} {
		var got []string
		for _, p := range []provider{e, g, a} {
			if p.key(tc.host) != "" {
				got = append(got, p.name())
			}
		}
		want := []string(nil)
		if tc.want != "" {
			want = []string{tc.want}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: providers (-want +got):\n%s", tc.host, diff)
		}
	}
}

// A reference's port is the author's to write: one naming a port nothing
// answers at must not fail, nor be remembered against, the registry's
// other images, which share its credential.
func TestPortPoisonsNoOtherImage(t *testing.T) {
	k, p, _ := newStub(t, time.Hour)
	p.refuse = "r1.cloud.test:1"
	if _, err := password(t, k, "r1.cloud.test:1"); err != nil {
		t.Logf("the reference with port 1: %v", err)
	}
	if got, err := password(t, k, "r1.cloud.test"); err != nil || got != "token-1" {
		t.Errorf("the registry's other images after one named port 1: %q, %v; want its token-1", got, err)
	}
	for _, host := range p.fetches {
		if strings.Contains(host, ":") {
			t.Errorf("the provider was asked for %q: the credential of a registry depends on no port", host)
		}
	}
}

// Host names are case-insensitive: an author who writes a cloud
// registry's host in capitals reaches the same registry, and must not
// turn its reading anonymous (a private image then fails to inspect, an
// availability failure, instead of being judged).
func TestHostCaseChangesNoOwner(t *testing.T) {
	k, p, _ := newStub(t, time.Hour)
	for _, host := range []string{"R1.Cloud.Test", "r1.cloud.test", "R1.CLOUD.TEST:443"} {
		if got, err := password(t, k, host); err != nil || got != "token-1" {
			t.Errorf("%s: got %q, %v; want the registry's token-1", host, got, err)
		}
	}
	if p.count() != 1 || p.fetches[0] != "r1.cloud.test" {
		t.Errorf("fetches %q, want one, for r1.cloud.test", p.fetches)
	}
	// Only ASCII letters fold: the Kelvin sign lowers to k in Unicode, but
	// europe-docker.p\u212Ag.dev is another (IDN) host, whoever owns it.
	g := newKeychain([]provider{&googleProvider{}}, k.opts)
	if got, err := password(t, g, "europe-docker.p\u212Ag.dev"); err != nil || got != "anonymous" {
		t.Errorf("a look-alike of a Google host: got %q, %v; want anonymous", got, err)
	}
}
