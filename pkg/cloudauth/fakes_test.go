package cloudauth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"slimgate.dev/slimgate/internal/devcluster"
)

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
	token := "registry-token-for-" + user
	return registryAuth{
		extra: map[string]http.HandlerFunc{realm: func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			writeJSON(w, map[string]any{"token": token, "access_token": token, "expires_in": 300})
		}},
		check:     func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token },
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

// tokenEndpoint counts the tokens a fake cloud endpoint issued, can be
// made to fail, and lists what it found wrong in requests.
type tokenEndpoint struct {
	mu       sync.Mutex
	tokens   int
	down     bool
	problems []string
}

// issue counts a token about to be issued; false when the endpoint is
// down and must answer with an error.
func (e *tokenEndpoint) issue() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return false
	}
	e.tokens++
	return true
}

// issued is the number of tokens issued.
func (e *tokenEndpoint) issued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tokens
}

// fail makes every later request fail.
func (e *tokenEndpoint) fail() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = true
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
