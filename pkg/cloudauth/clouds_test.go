package cloudauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/inspection"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// cloud is one provider's fake: its token endpoint, the environment that
// points the SDK at it, and a registry standing in for the cloud's.
type cloud struct {
	provider string
	registry *fakeRegistry
	endpoint *tokenEndpoint
}

// isolate clears what the SDKs would otherwise read from this machine:
// every variable of the clouds' SDKs and proxies is unset, and HOME (where
// their configuration files live) is an empty folder.
func isolate(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "AZURE_") || strings.HasPrefix(k, "GOOGLE_") || strings.HasPrefix(k, "GCE_") ||
			strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			t.Setenv(k, "") // restored after the test
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// newECRCloud fakes ECR's API (AWS_ENDPOINT_URL_ECR, static keys in the
// environment) and a private ECR registry, which takes AWS and the
// password in the token ECR issued.
func newECRCloud(t *testing.T, w *world) cloud {
	const host, region, password = "123456789012.dkr.ecr.us-west-2.amazonaws.com", "us-west-2", "ecr-password"
	e := &tokenEndpoint{}
	api := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Amz-Target"); got != "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" {
			e.problem("called with X-Amz-Target %q", got)
		}
		if a := r.Header.Get("Authorization"); !strings.Contains(a, "Credential=AKIDSLIMGATETEST/") || !strings.Contains(a, "/"+region+"/ecr/aws4_request") {
			e.problem("request not signed with the environment's key for %s: %q", region, a)
		}
		var in map[string]any
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in) != 0 {
			e.problem("asked with %v (%v), want no parameters: a token serves every registry of the region", in, err)
		}
		rw.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if !e.issue() {
			rw.WriteHeader(http.StatusBadRequest)
			_, _ = rw.Write([]byte(`{"__type":"AccessDeniedException","message":"not authorized to perform ecr:GetAuthorizationToken"}`))
			return
		}
		writeJSON(rw, map[string]any{"authorizationData": []map[string]any{{
			"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + password)),
			"expiresAt":          float64(time.Now().Add(12 * time.Hour).Unix()),
			"proxyEndpoint":      "https://" + host,
		}}})
	}))
	t.Cleanup(api.Close)
	t.Setenv("AWS_ENDPOINT_URL_ECR", api.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSLIMGATETEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
	return cloud{provider: ECR, endpoint: e, registry: newFakeRegistry(t, w, host, basic("AWS", password))}
}

// newGoogleCloud fakes the GKE metadata server (GCE_METADATA_HOST) and an
// Artifact Registry host, whose token endpoint takes the access token the
// metadata server issued.
func newGoogleCloud(t *testing.T, w *world) cloud {
	const host, token = "europe-docker.pkg.dev", "gcp-access-token"
	e := &tokenEndpoint{}
	md := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			e.problem("%s without Metadata-Flavor: Google", r.URL.Path)
		}
		switch r.URL.Path {
		case "/computeMetadata/v1/instance/service-accounts/default/token":
			if !strings.Contains(r.URL.Query().Get("scopes"), cloudPlatformScope) {
				e.problem("token asked for scopes %q", r.URL.Query().Get("scopes"))
			}
			if !e.issue() {
				http.Error(rw, "the Kubernetes service account is not bound to a Google service account", http.StatusForbidden)
				return
			}
			writeJSON(rw, map[string]any{"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
		case "/computeMetadata/v1/project/project-id":
			_, _ = rw.Write([]byte("slimgate-test"))
		default:
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(md.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(md.URL, "http://"))
	return cloud{provider: Google, endpoint: e, registry: newFakeRegistry(t, w, host, bearer(host, "/v2/token", "oauth2accesstoken", token))}
}

// newAzureCloud fakes Microsoft Entra (AZURE_AUTHORITY_HOST, with the
// instance discovery MSAL asks login.microsoftonline.com for) taking the
// workload identity's federated token (AZURE_FEDERATED_TOKEN_FILE), and
// an ACR registry whose /oauth2/exchange takes the Entra token.
func newAzureCloud(t *testing.T, w *world) cloud {
	const host, tenant, clientID, saToken = "slimtest.azurecr.io", "tenant-1", "client-1", "projected-service-account-token"
	e := &tokenEndpoint{}
	entraToken := fakeJWT(map[string]any{"tid": tenant, "aud": "https://management.azure.com", "exp": time.Now().Add(time.Hour).Unix()})
	refreshToken := fakeJWT(map[string]any{"exp": time.Now().Add(3 * time.Hour).Unix()})
	w.serve(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/common/discovery/instance":
			writeJSON(rw, map[string]any{
				"tenant_discovery_endpoint": "https://entra.test/" + tenant + "/v2.0/.well-known/openid-configuration",
				"api-version":               "1.1",
				"metadata":                  []map[string]any{{"preferred_network": "entra.test", "preferred_cache": "entra.test", "aliases": []string{"entra.test"}}},
			})
		case "/" + tenant + "/v2.0/.well-known/openid-configuration":
			base := "https://entra.test/" + tenant
			writeJSON(rw, map[string]any{"token_endpoint": base + "/oauth2/v2.0/token", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
				"issuer": base + "/v2.0"})
		case "/" + tenant + "/oauth2/v2.0/token":
			_ = r.ParseForm()
			if r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_assertion") != saToken {
				e.problem("token asked for client %q with assertion %q", r.PostForm.Get("client_id"), r.PostForm.Get("client_assertion"))
			}
			if !strings.Contains(r.PostForm.Get("scope"), "https://management.azure.com/.default") {
				e.problem("token asked for scope %q", r.PostForm.Get("scope"))
			}
			if !e.issue() {
				rw.Header().Set("Content-Type", "application/json")
				rw.WriteHeader(http.StatusUnauthorized)
				_, _ = rw.Write([]byte(`{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found"}`))
				return
			}
			writeJSON(rw, map[string]any{"access_token": entraToken, "expires_in": 3599, "token_type": "Bearer"})
		default:
			e.problem("unexpected request %s %s", r.Method, r.URL)
			http.NotFound(rw, r)
		}
	}), "entra.test", "login.microsoftonline.com")
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(saToken), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AZURE_CLIENT_ID", clientID)
	t.Setenv("AZURE_TENANT_ID", tenant)
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", file)
	t.Setenv("AZURE_AUTHORITY_HOST", "https://entra.test/")

	auth := bearer(host, "/oauth2/token", acrUser, refreshToken)
	auth.extra["/oauth2/exchange"] = func(rw http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f := r.PostForm
		if r.Method != http.MethodPost || f.Get("grant_type") != "access_token" || f.Get("service") != host || f.Get("tenant") != tenant || f.Get("access_token") != entraToken {
			e.problem("exchange asked with %s %v", r.Method, f)
			http.Error(rw, "bad exchange", http.StatusUnauthorized)
			return
		}
		writeJSON(rw, map[string]string{"refresh_token": refreshToken})
	}
	return cloud{provider: ACR, endpoint: e, registry: newFakeRegistry(t, w, host, auth)}
}

// TestCloudRegistries reads an image from a loopback registry standing in
// for each cloud's registry with the token the cloud's fake issued, and
// an image on another registry with the same keychain: that registry
// never sees a credential. When the token endpoint fails, the image of
// the cloud registry is an availability failure; the other still reads.
func TestCloudRegistries(t *testing.T) {
	for _, setup := range []func(*testing.T, *world) cloud{newECRCloud, newGoogleCloud, newAzureCloud} {
		w := newWorld(t)
		isolate(t)
		c := setup(t, w)
		t.Run(c.provider, func(t *testing.T) {
			defer c.endpoint.checkNoProblems(t)
			other := newFakeRegistry(t, w, "registry.example.test", askingButOpen())
			cloudRef, otherRef := c.registry.host+"/team/app:v1", other.host+"/team/app:v1"
			cloudDigest, otherDigest := c.registry.push(t, "team/app:v1"), other.push(t, "team/app:v1")
			c.registry.push(t, "team/tool:v1")

			kc, err := New(context.Background(), []string{c.provider}, Options{Transport: w.transport()})
			if err != nil {
				t.Fatal(err)
			}
			inspect := newInspector(t, w)
			for _, want := range []struct{ ref, digest string }{
				{cloudRef, cloudDigest.String()}, {otherRef, otherDigest.String()}, {c.registry.host + "/team/tool:v1", ""},
			} {
				insp, err := inspect(want.ref, kc)
				if err != nil {
					t.Fatalf("%s: %v", want.ref, err)
				}
				if want.digest != "" && insp.Digest != want.digest {
					t.Errorf("%s: digest %s, want %s", want.ref, insp.Digest, want.digest)
				}
			}
			if n := c.endpoint.issued(); n != 1 {
				t.Errorf("the token endpoint issued %d tokens, want 1 (cached for the second repository)", n)
			}
			if got := c.registry.authorized(); len(got) == 0 {
				t.Error("the cloud registry saw no credentials")
			}
			if got := other.authorized(); len(got) != 0 || len(other.requests()) == 0 {
				t.Errorf("the other registry saw credentials %q in %d requests, want none", got, len(other.requests()))
			}

			// The identity stops working: that image alone is not judged,
			// as an availability failure.
			c.endpoint.fail()
			broken, err := New(context.Background(), []string{c.provider}, Options{Transport: w.transport()})
			if err != nil {
				t.Fatal(err)
			}
			inspect = newInspector(t, w)
			_, err = inspect(cloudRef, broken)
			f := inspection.Classify(err, false)
			if f.Reason != string(registry.ReasonCredentials) || f.Invalid {
				t.Fatalf("token endpoint failing: %+v (%v), want an availability failure %s", f, err, registry.ReasonCredentials)
			}
			for _, onError := range []v1alpha1.InspectionErrorAction{v1alpha1.InspectionErrorAllow, v1alpha1.InspectionErrorDeny} {
				res := policy.InspectionFailed(&v1alpha1.SlimImagePolicySpec{Mode: v1alpha1.ModeEnforce, OnInspectionError: onError}, cloudRef, f)
				wantDeny := onError == v1alpha1.InspectionErrorDeny
				if (res.Verdict == policy.VerdictDeny) != wantDeny || (wantDeny && res.Findings[0].Rule != policy.RuleInspectionFailed) {
					t.Errorf("onInspectionError %s: verdict %s, findings %+v", onError, res.Verdict, res.Findings)
				}
			}
			if _, err := inspect(otherRef, broken); err != nil {
				t.Errorf("the other registry's image failed with the cloud's: %v", err)
			}
		})
	}
}

// newInspector returns a function that inspects a reference with a
// registry client whose connections go to the world's servers.
func newInspector(t *testing.T, w *world) func(ref string, kc *Keychain) (*registry.Inspection, error) {
	t.Helper()
	r, err := registry.NewRemote(registry.Options{RootCAs: w.pool, HostAliases: w.routes, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return func(ref string, kc *Keychain) (*registry.Inspection, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return r.Inspect(ctx, registry.Request{Reference: ref, Keychain: kc, CredentialScope: kc.Scope()})
	}
}

// Without a Transport, Google's token requests that are not sent to the
// metadata server (a key file, workload identity federation) are bounded
// by FetchTimeout too: the library's default client has no timeout, and
// its token source takes no context, so one request that hangs held the
// shared fetch, and every later Google image waited on it, forever.
func TestGoogleTokenRequestsAreBounded(t *testing.T) {
	isolate(t)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) }) // before the server closes
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	file := filepath.Join(t.TempDir(), "key.json")
	b, err := json.Marshal(map[string]string{"type": "service_account", "client_email": "scanner@slimgate-test.iam.gserviceaccount.com",
		"private_key": string(pemKey), "private_key_id": "1", "token_uri": hung.URL + "/token"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", file)
	kc, err := New(context.Background(), []string{Google}, Options{FetchTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = kc.ResolveContext(ctx, repo(t, "europe-docker.pkg.dev"))
	if err == nil || strings.Contains(err.Error(), "in time") {
		t.Fatalf("the token request hung past FetchTimeout until the caller's own deadline: %v", err)
	}
}
