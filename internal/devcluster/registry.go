package devcluster

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"strings"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// NewRegistry returns an in-memory registry (go-containerregistry's) that
// logs nothing.
func NewRegistry() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

// RequestKind names what a registry request asks for, for tests that count
// them: "ping", "manifest " or "blob " and the method, else "other " and the
// method.
func RequestKind(r *http.Request) string {
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		return "ping"
	case strings.Contains(r.URL.Path, "/manifests/"):
		return "manifest " + r.Method
	case strings.Contains(r.URL.Path, "/blobs/"):
		return "blob " + r.Method
	}
	return "other " + r.Method
}

// BasicAuth serves next only to requests with HTTP basic credentials user
// and password; others get 401 with a challenge for realm.
func BasicAuth(next http.Handler, user, password, realm string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		// Both compared in full, so timing says nothing about which one
		// was wrong.
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1
		passwordOK := subtle.ConstantTimeCompare([]byte(p), []byte(password)) == 1
		if !ok || !userOK || !passwordOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// DockerConfigJSON is the content of a kubernetes.io/dockerconfigjson
// Secret holding user and password for host.
func DockerConfigJSON(host, user, password string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	// Marshalling maps of strings cannot fail.
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"username": user, "password": password, "auth": auth},
	}})
	return b
}
