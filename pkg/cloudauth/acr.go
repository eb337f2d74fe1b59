package cloudauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// acrClouds maps the registry host suffix of each Azure cloud to the
// audience of the Microsoft Entra token ACR exchanges for its own.
var acrClouds = []struct{ suffix, scope string }{
	{".azurecr.io", "https://management.azure.com/.default"},
	{".azurecr.cn", "https://management.chinacloudapi.cn/.default"},
	{".azurecr.us", "https://management.usgovcloudapi.net/.default"},
}

// acrUser is the user name ACR expects with a refresh token as password.
const acrUser = "00000000-0000-0000-0000-000000000000"

// acrProvider gets a Microsoft Entra access token with azidentity's
// DefaultAzureCredential (environment, Azure workload identity, managed
// identity) and exchanges it at the registry's /oauth2/exchange for an
// ACR refresh token, which the registry takes as a password.
type acrProvider struct {
	cred   azcore.TokenCredential
	client *http.Client
}

func newACR(opts Options) (*acrProvider, error) {
	client := opts.client()
	var o azidentity.DefaultAzureCredentialOptions
	if opts.Transport != nil {
		o.Transport = client
	}
	cred, err := azidentity.NewDefaultAzureCredential(&o)
	if err != nil {
		return nil, err
	}
	return &acrProvider{cred: cred, client: client}, nil
}

func (*acrProvider) name() string { return ACR }

// key is the host: a refresh token serves one registry.
func (*acrProvider) key(host string) string {
	if acrScope(host) != "" {
		return host
	}
	return ""
}

// acrScope is the Entra audience for an ACR host, "" for other hosts.
func acrScope(host string) string {
	for _, c := range acrClouds {
		if strings.HasSuffix(host, c.suffix) && len(host) > len(c.suffix) {
			return c.scope
		}
	}
	return ""
}

func (p *acrProvider) fetch(ctx context.Context, host string) (credential, error) {
	tok, err := p.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope(host)}})
	if err != nil {
		return credential{}, fmt.Errorf("getting a Microsoft Entra token: %w", err)
	}
	form := url.Values{"grant_type": {"access_token"}, "service": {host}, "access_token": {tok.Token}}
	if tid := readClaims(tok.Token).TenantID; tid != "" {
		form.Set("tenant", tid)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host+"/oauth2/exchange", strings.NewReader(form.Encode()))
	if err != nil {
		return credential{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.client.Do(req)
	if err != nil {
		return credential{}, fmt.Errorf("exchanging the Entra token at %s: %w", host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return credential{}, fmt.Errorf("reading %s's token exchange answer: %w", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return credential{}, fmt.Errorf("exchanging the Entra token at %s: %s", host, resp.Status)
	}
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RefreshToken == "" {
		return credential{}, errors.Join(fmt.Errorf("%s's token exchange answer holds no refresh token", host), err)
	}
	expires := tok.ExpiresOn
	if exp := readClaims(out.RefreshToken).Expiry; exp > 0 {
		expires = time.Unix(exp, 0)
	}
	return credential{username: acrUser, password: out.RefreshToken, expires: expires}, nil
}

// claims are the fields read from a token's payload, unverified: the
// tenant to name in the exchange and when the refresh token expires.
type claims struct {
	TenantID string `json:"tid"`
	Expiry   int64  `json:"exp"`
}

// readClaims reads the payload of a JWT without verifying it; zero when
// token is not one.
func readClaims(token string) claims {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c
	}
	_ = json.Unmarshal(b, &c)
	return c
}
