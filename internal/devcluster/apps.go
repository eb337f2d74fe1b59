package devcluster

import (
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ImageSpec is the history and environment of an image to build.
type ImageSpec struct {
	// History is the config's history, in build order.
	History []v1.History
	// Env is the config's environment, KEY=VALUE.
	Env []string
}

// Build makes the image with BuildImage: one random layer of layerSize
// bytes per history entry that adds one, the last of lastLayerSize bytes
// when that is above 0.
func (s ImageSpec) Build(layerSize, lastLayerSize int64) (v1.Image, error) {
	return BuildImage(s.History, s.Env, layerSize, lastLayerSize)
}

// GoSDKApp is an app built in one stage on golang:1.24.4-bookworm, with
// that image's real history lines: the Go SDK (and a C compiler) ship with
// it, which the default policy denies.
func GoSDKApp() ImageSpec {
	return ImageSpec{
		History: []v1.History{
			{CreatedBy: "# debian.sh --arch 'amd64' out/ 'bookworm' '@1749513600'"},
			{CreatedBy: "RUN /bin/sh -c set -eux; \tapt-get update; \tapt-get install -y --no-install-recommends \t\tg++ \t\tgcc \t\tlibc6-dev \t\tmake \t\tpkg-config \t; \trm -rf /var/lib/apt/lists/*"},
			{CreatedBy: "ENV GOLANG_VERSION=1.24.4", EmptyLayer: true},
			{CreatedBy: "ENV GOTOOLCHAIN=local", EmptyLayer: true},
			{CreatedBy: "ENV GOPATH=/go", EmptyLayer: true},
			{CreatedBy: "ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", EmptyLayer: true},
			{CreatedBy: "COPY /target/ / # buildkit", Comment: "buildkit.dockerfile.v0"},
			{CreatedBy: "WORKDIR /src", Comment: "buildkit.dockerfile.v0"},
			{CreatedBy: "COPY . . # buildkit", Comment: "buildkit.dockerfile.v0"},
			{CreatedBy: "RUN /bin/sh -c go build -o /app . # buildkit", Comment: "buildkit.dockerfile.v0"},
			{CreatedBy: `CMD ["/app"]`, Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
		},
		Env: []string{
			"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"GOLANG_VERSION=1.24.4", "GOTOOLCHAIN=local", "GOPATH=/go",
		},
	}
}

// StaticApp is the same app built in two stages: the binary copied onto a
// distroless static base, which the default policy admits.
func StaticApp() ImageSpec {
	return ImageSpec{
		History: []v1.History{
			{CreatedBy: "bazel build ...", Comment: "distroless static"},
			{CreatedBy: "COPY /app /app # buildkit", Comment: "buildkit.dockerfile.v0"},
			{CreatedBy: "USER 65532:65532", Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
			{CreatedBy: `ENTRYPOINT ["/app"]`, Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
		},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}
}

// BigLayer is the size of the last layer of Registries.BigStaticApp: over
// a 1 MiB budget.
const BigLayer = 2 << 20

// Registries are two in-process registries on loopback ports, over plain
// HTTP: Open, which anyone may pull from and push to, and Private, which
// wants HTTP basic credentials.
type Registries struct {
	// Open and Private are the registries' hosts (127.0.0.1:port).
	Open, Private string
	// User and Password are Private's credentials.
	User, Password string

	servers []*httptest.Server
}

// StartRegistries starts both registries; Close stops them.
func StartRegistries(user, password string) *Registries {
	open := httptest.NewServer(NewRegistry())
	private := httptest.NewServer(BasicAuth(NewRegistry(), user, password, "slimgate-test"))
	return &Registries{
		Open:     strings.TrimPrefix(open.URL, "http://"),
		Private:  strings.TrimPrefix(private.URL, "http://"),
		User:     user,
		Password: password,
		servers:  []*httptest.Server{open, private},
	}
}

// Close stops both registries.
func (r *Registries) Close() {
	for _, s := range r.servers {
		s.Close()
	}
}

// Auth is the remote option carrying Private's credentials.
func (r *Registries) Auth() remote.Option {
	return remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password})
}

// DockerConfigJSON is the content of a kubernetes.io/dockerconfigjson
// Secret for Private.
func (r *Registries) DockerConfigJSON() []byte {
	return DockerConfigJSON(r.Private, r.User, r.Password)
}

// GoSDKApp is the reference of PushApps' GoSDKApp image in Open.
func (r *Registries) GoSDKApp() string { return r.Open + "/golang-app:1" }

// StaticApp is the reference of PushApps' StaticApp image in Open.
func (r *Registries) StaticApp() string { return r.Open + "/slim-app:1" }

// BigStaticApp is the reference of PushApps' StaticApp image whose last
// layer is BigLayer bytes, in Open.
func (r *Registries) BigStaticApp() string { return r.Open + "/big-app:1" }

// PrivateGoSDKApp is the reference of PushApps' GoSDKApp image in Private.
func (r *Registries) PrivateGoSDKApp() string { return r.Private + "/team/golang-app:1" }

// PushApps builds the GoSDKApp and StaticApp images (layers of 512 random
// bytes) and pushes them to the references above.
func (r *Registries) PushApps() error {
	for _, p := range []struct {
		ref  string
		spec ImageSpec
		last int64
		opts []remote.Option
	}{
		{r.GoSDKApp(), GoSDKApp(), 0, nil},
		{r.StaticApp(), StaticApp(), 0, nil},
		{r.BigStaticApp(), StaticApp(), BigLayer, nil},
		{r.PrivateGoSDKApp(), GoSDKApp(), 0, []remote.Option{r.Auth()}},
	} {
		img, err := p.spec.Build(512, p.last)
		if err != nil {
			return err
		}
		if err := Push(p.ref, img, p.opts...); err != nil {
			return err
		}
	}
	return nil
}
