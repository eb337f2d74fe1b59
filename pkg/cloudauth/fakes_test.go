package cloudauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"slimgate.dev/slimgate/internal/devcluster"
)

// world stands loopback servers in for the clouds' host names: one
// certificate names every host, and routes maps each "host:443" to the
// server that plays it.
type world struct {
	cert   tls.Certificate
	pool   *x509.CertPool
	routes map[string]string
}

// hostNames are the names the test certificate is valid for.
var hostNames = []string{
	"123456789012.dkr.ecr.us-west-2.amazonaws.com", "europe-docker.pkg.dev", "slimtest.azurecr.io",
	"registry.example.test", "entra.test", "login.microsoftonline.com",
}

func newWorld(t *testing.T) *world {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cloudauth test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              hostNames,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &world{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool, routes: map[string]string{}}
}

// serve starts a TLS server for h and routes the names to it.
func (w *world) serve(t *testing.T, h http.Handler, names ...string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{w.cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, n := range names {
		w.routes[n+":443"] = srv.Listener.Addr().String()
	}
}

// transport routes the world's names to their servers and trusts its
// certificate: what the providers' token requests go through. Any other
// name fails, so nothing leaves the machine.
func (w *world) transport() http.RoundTripper {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := w.routes[addr]; ok {
				return d.DialContext(ctx, network, to)
			}
			if host, _, _ := net.SplitHostPort(addr); host == "127.0.0.1" {
				return d.DialContext(ctx, network, addr)
			}
			return nil, fmt.Errorf("the test world has no %s", addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: w.pool, MinVersion: tls.VersionTLS12},
	}
}

// fakeRegistry is go-containerregistry's registry behind the
// authentication a cloud registry asks for, recording what each request
// presented.
type fakeRegistry struct {
	host  string
	store http.Handler // the registry without authentication, to push to

	mu   sync.Mutex
	seen []string // "path authorization" of each registry request
}

func (r *fakeRegistry) record(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, req.URL.Path+" "+req.Header.Get("Authorization"))
}

func (r *fakeRegistry) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// authorized reports whether any request presented credentials.
func (r *fakeRegistry) authorized() []string {
	var out []string
	for _, s := range r.requests() {
		if path, auth, _ := strings.Cut(s, " "); auth != "" {
			out = append(out, path+" "+auth)
		}
	}
	return out
}

// push writes a small image as repoTag and returns its digest.
func (r *fakeRegistry) push(t *testing.T, repoTag string) v1.Hash {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.store)
	defer srv.Close()
	if err := devcluster.Push(strings.TrimPrefix(srv.URL, "http://")+"/"+repoTag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// registryAuth is how a fake registry checks credentials. extra serves
// the paths besides /v2/ (token endpoints); check says whether a
// registry request may pass, and challenge is the WWW-Authenticate
// answer when not.
type registryAuth struct {
	extra     map[string]http.HandlerFunc
	check     func(*http.Request) bool
	challenge string
}

// askingButOpen asks for credentials at the ping and serves every other
// request without: a client with credentials for it presents them, one
// without reads anonymously.
func askingButOpen() registryAuth {
	return registryAuth{check: func(r *http.Request) bool { return r.URL.Path != "/v2/" }, challenge: `Basic realm="registry"`}
}

// basic asks for one user and password, as ECR does.
func basic(user, password string) registryAuth {
	return registryAuth{
		check: func(r *http.Request) bool {
			u, p, ok := r.BasicAuth()
			return ok && u == user && p == password
		},
		challenge: `Basic realm="registry"`,
	}
}

// bearer serves a token endpoint at realm on host that takes user and
// password (basic) and issues registry tokens that the registry then
// asks for, as Google's registries and ACR do.
func bearer(host, realm, user, password string) registryAuth {
	var issued sync.Map
	var n atomic.Int64
	return registryAuth{
		extra: map[string]http.HandlerFunc{realm: func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			tok := fmt.Sprintf("registry-token-%d", n.Add(1))
			issued.Store(tok, true)
			writeJSON(w, map[string]any{"token": tok, "access_token": tok, "expires_in": 300})
		}},
		check: func(r *http.Request) bool {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			_, known := issued.Load(tok)
			return ok && known
		},
		challenge: fmt.Sprintf(`Bearer realm="https://%s%s",service="%s"`, host, realm, host),
	}
}

// newFakeRegistry serves a registry for host in w.
func newFakeRegistry(t *testing.T, w *world, host string, auth registryAuth) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{host: host, store: devcluster.NewRegistry()}
	w.serve(t, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if h, ok := auth.extra[req.URL.Path]; ok {
			h(rw, req)
			return
		}
		r.record(req)
		if !auth.check(req) {
			rw.Header().Set("WWW-Authenticate", auth.challenge)
			http.Error(rw, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		r.store.ServeHTTP(rw, req)
	}), host)
	return r
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// tokenEndpoint counts the tokens a fake cloud endpoint issued and can be
// made to fail.
type tokenEndpoint struct {
	issued  atomic.Int64
	failing atomic.Bool
	// problems lists what the endpoint found wrong in requests.
	mu       sync.Mutex
	problems []string
}

func (e *tokenEndpoint) problem(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.problems = append(e.problems, fmt.Sprintf(format, args...))
}

func (e *tokenEndpoint) checkNoProblems(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.problems {
		t.Errorf("token endpoint: %s", p)
	}
}

// fakeJWT is a token shaped as a JWT with the given claims, unsigned.
func fakeJWT(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString(b) + ".c2ln"
}
