package cloudauth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	googauth "golang.org/x/oauth2/google"
)

// cloudPlatformScope is the OAuth scope registry tokens are asked with.
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// googleProvider fetches access tokens with Application Default
// Credentials: GOOGLE_APPLICATION_CREDENTIALS (a key or a workload
// identity federation configuration), else the metadata server (GKE
// Workload Identity, the node's service account). The registries take the
// access token as a password.
//
// go-containerregistry's google.Keychain wraps the same library, but it
// remembers its first answer for the life of the process (a metadata
// server that failed once leaves it anonymous until a restart) and falls
// back to running gcloud; here a failure is retried after FailureTTL.
type googleProvider struct {
	// client carries the token requests not sent to the metadata server
	// (which has its own client and timeouts): the library's default has
	// no timeout, and its token source takes no context.
	client *http.Client

	mu sync.Mutex
	ts oauth2.TokenSource // found on first success
}

func newGoogle(opts Options) *googleProvider {
	return &googleProvider{client: opts.client()}
}

func (*googleProvider) name() string { return Google }

// key is the same for every Google registry: one access token serves
// them all.
func (*googleProvider) key(host string) string {
	if host == "gcr.io" || strings.HasSuffix(host, ".gcr.io") || strings.HasSuffix(host, ".pkg.dev") {
		return "google"
	}
	return ""
}

func (p *googleProvider) fetch(ctx context.Context, _ string) (credential, error) {
	ts, err := p.source(ctx)
	if err != nil {
		return credential{}, err
	}
	tok, err := ts.Token()
	if err != nil {
		return credential{}, fmt.Errorf("getting an access token: %w", err)
	}
	return credential{username: "oauth2accesstoken", password: tok.AccessToken, expires: tok.Expiry}, nil
}

// source finds the Application Default Credentials once they can be
// found. The token source keeps the context it is found with for later
// refreshes, so it gets one that carries the HTTP client and never ends.
func (p *googleProvider) source(ctx context.Context) (oauth2.TokenSource, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ts != nil {
		return p.ts, nil
	}
	ctx = context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, p.client)
	ts, err := googauth.DefaultTokenSource(ctx, cloudPlatformScope)
	if err != nil {
		return nil, fmt.Errorf("finding Application Default Credentials: %w", err)
	}
	p.ts = ts
	return ts, nil
}
