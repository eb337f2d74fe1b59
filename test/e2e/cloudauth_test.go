package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/cloudauth"
)

// TestCloudIdentityReadsECR runs the webhook with
// --registry-auth-providers=ecr against a fake of ECR's API (the AWS SDK
// pointed at it by AWS_ENDPOINT_URL_ECR, static keys in the environment)
// and a loopback registry standing in for an ECR host that takes only the
// token ECR issued. A Pod naming a Go SDK image there is denied with the
// image's own evidence: it was read with the webhook's identity. A Pod
// naming an image on another registry, which asks for credentials but
// serves anyone, is admitted and that registry never sees a credential.
// An ECR region whose token is refused is an availability failure: the
// Pod is admitted under onInspectionError Allow, with an InspectionFailed
// Event that says why, and denied under Deny.
func TestCloudIdentityReadsECR(t *testing.T) {
	const (
		account  = "123456789012"
		granted  = "us-west-2"
		refused  = "us-east-2"
		password = "ecr-password"
	)
	ecrHost := func(region string) string { return account + ".dkr.ecr." + region + ".amazonaws.com" }

	var apiCalls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiCalls.Add(1)
		// The request is signed for the region of the registry's host.
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if a := r.Header.Get("Authorization"); !strings.Contains(a, "Credential=AKIDSLIMGATEE2E/") || !strings.Contains(a, "/"+granted+"/ecr/") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"AccessDeniedException","message":"not authorized to perform ecr:GetAuthorizationToken"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"authorizationData": []map[string]any{{
			"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + password)),
			"expiresAt":          float64(time.Now().Add(12 * time.Hour).Unix()),
			"proxyEndpoint":      "https://" + ecrHost(granted),
		}}})
	}))
	t.Cleanup(api.Close)
	home := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_ECR": api.URL, "AWS_ACCESS_KEY_ID": "AKIDSLIMGATEE2E", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
		"AWS_CONFIG_FILE": filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}

	// The ECR registry (standing in for both regions) and the other one,
	// on loopback over plain HTTP (the policy lists them as insecure). The
	// other asks for credentials at the ping and serves anyone.
	ecrAuth := remote.WithAuth(&authn.Basic{Username: "AWS", Password: password})
	ecr := devcluster.StartCountingRegistry(func(h http.Handler) http.Handler { return devcluster.BasicAuth(h, "AWS", password, "ecr") }, 0)
	t.Cleanup(ecr.Close)
	other := devcluster.StartCountingRegistry(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" && r.Header.Get("Authorization") == "" {
				w.Header().Set("WWW-Authenticate", `Basic realm="other"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}, 0)
	t.Cleanup(other.Close)
	sdk, err := devcluster.GoSDKApp().Build(512, 0)
	if err != nil {
		t.Fatal(err)
	}
	static, err := devcluster.StaticApp().Build(512, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecr.Push("team/golang-app:1", sdk); err == nil {
		t.Fatal("the fake ECR registry took a push without ECR's token")
	}
	if _, err := ecr.Push("team/golang-app:1", sdk, ecrAuth); err != nil {
		t.Fatal(err)
	}
	otherImage, err := other.Push("slim-app:1", static)
	if err != nil {
		t.Fatal(err)
	}

	// This test's webhook: the suite's options plus the provider, with the
	// ECR names dialled at the loopback registry.
	o := e2e.WebhookOptions
	o.RegistryAuthProviders = []string{cloudauth.ECR}
	o.RegistryHostAliases = map[string]string{ecrHost(granted) + ":80": ecr.Host, ecrHost(refused) + ":80": ecr.Host}
	replaceWebhook(t, o)

	ns := namespace(t, caseLabels(t))
	s := spec(v1alpha1.ModeEnforce, caseLabels(t))
	s.Registries.Insecure = append(s.Registries.Insecure, ecrHost(granted), ecrHost(refused), other.Host)
	policy(t, s)

	_, err = create(t, pod(ns, "ecr-sdk", ecrHost(granted)+"/team/golang-app:1"))
	mustDeny(t, err, "toolchain.go")
	mentionsGoSDK(t, err.Error())
	if n := apiCalls.Load(); n != 1 {
		t.Errorf("ECR's API was called %d times, want once", n)
	}
	if creds := ecr.Authorizations(); len(creds) == 0 {
		t.Errorf("the ECR registry saw no credentials in %v", ecr.Counts())
	}

	if _, err := create(t, pod(ns, "other-static", otherImage)); err != nil {
		t.Errorf("image on another registry: %v", err)
	}
	if creds, counts := other.Authorizations(), other.Counts(); len(creds) != 0 || counts["manifest GET"]+counts["manifest HEAD"] == 0 {
		t.Errorf("the other registry saw credentials %q in %v, want none", creds, counts)
	}

	refusedImage := ecrHost(refused) + "/team/golang-app:1"
	if _, err := create(t, pod(ns, "ecr-refused", refusedImage)); err != nil {
		t.Fatalf("an image whose token ECR refused was denied under onInspectionError Allow: %v", err)
	}
	ev := waitEvent(t, ns, "ecr-refused", "InspectionFailed")
	if !strings.Contains(ev.Note, "CredentialsUnavailable") || !strings.Contains(ev.Note, "AccessDeniedException") {
		t.Errorf("event note does not say the credentials were unavailable and why:\n%s", ev.Note)
	}

	// Under onInspectionError Deny the same failure denies.
	denyLabels := map[string]string{caseLabel: "cloud-identity-deny"}
	denyNS := namespace(t, denyLabels)
	d := spec(v1alpha1.ModeEnforce, denyLabels)
	d.Registries.Insecure = s.Registries.Insecure
	d.OnInspectionError = v1alpha1.InspectionErrorDeny
	policy(t, d)
	_, err = create(t, pod(denyNS, "ecr-refused", refusedImage))
	mustDeny(t, err, refusedImage, "inspection.failed")
}
