package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"slimgate.dev/slimgate/internal/devcluster"
)

// failingKeychain fails to produce credentials, as a cloud provider whose
// token endpoint is down does.
type failingKeychain struct{ err error }

func (k failingKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return nil, k.err }

func TestKeychainFailureIsCredentialsUnavailable(t *testing.T) {
	reg := newTestRegistry(t, nil)
	ref := reg.push(t, "app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x"))
	r, _ := newTestRemote(t, Options{})
	req := plainRequest(ref, reg.Host)
	req.Keychain, req.CredentialScope = failingKeychain{errors.New("token endpoint answered 503")}, "cloud"
	_, err := r.Inspect(context.Background(), req)
	ie := wantReason(t, err, ReasonCredentials)
	if ie.Reason.Invalid() {
		t.Errorf("%s is the image's fault, want an availability failure", ie.Reason)
	}
	if !strings.Contains(err.Error(), "token endpoint answered 503") {
		t.Errorf("error %q does not say what the keychain said", err)
	}
	if got := reg.Counts(); len(got) != 0 {
		t.Errorf("the registry was contacted without credentials: %v", got)
	}
}

// HostAliases sends a registry name to another address, and TLS still
// verifies the name.
func TestHostAliases(t *testing.T) {
	srv := httptest.NewTLSServer(devcluster.NewRegistry())
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	// httptest's certificate names example.com.
	img := buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "RUN x")
	tag, err := name.NewTag(addr + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	r, _ := newTestRemote(t, Options{RootCAs: pool, HostAliases: map[string]string{"example.com:443": addr}})
	insp, err := r.Inspect(context.Background(), Request{Reference: "example.com/app:v1"})
	if err != nil {
		t.Fatalf("inspecting through the alias: %v", err)
	}
	if want, _ := img.Digest(); insp.Digest != want.String() {
		t.Errorf("digest %s, want %s", insp.Digest, want)
	}
}
