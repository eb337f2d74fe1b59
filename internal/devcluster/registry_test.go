package devcluster

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBasicAuth(t *testing.T) {
	for _, tc := range []struct {
		name           string
		user, password string
		noAuth         bool
		wantStatus     int
	}{
		{name: "right credentials", user: "puller", password: "s3cret", wantStatus: http.StatusOK},
		{name: "no credentials", noAuth: true, wantStatus: http.StatusUnauthorized},
		{name: "wrong password", user: "puller", password: "s3cret!", wantStatus: http.StatusUnauthorized},
		{name: "wrong user", user: "pusher", password: "s3cret", wantStatus: http.StatusUnauthorized},
		{name: "password prefix", user: "puller", password: "s3c", wantStatus: http.StatusUnauthorized},
		{name: "empty", user: "", password: "", wantStatus: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served := false
			next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				served = true
				w.WriteHeader(http.StatusOK)
			})
			r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			if !tc.noAuth {
				r.SetBasicAuth(tc.user, tc.password)
			}
			w := httptest.NewRecorder()
			BasicAuth(next, "puller", "s3cret", "test").ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tc.wantStatus)
			}
			if refused := tc.wantStatus == http.StatusUnauthorized; served == refused {
				t.Errorf("next handler called: %v, want %v", served, !refused)
			}
			wantChallenge := ""
			if tc.wantStatus == http.StatusUnauthorized {
				wantChallenge = `Basic realm="test"`
			}
			if got := w.Header().Get("WWW-Authenticate"); got != wantChallenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, wantChallenge)
			}
		})
	}
}

func TestDockerConfigJSON(t *testing.T) {
	var got struct {
		Auths map[string]struct {
			Username, Password, Auth string
		}
	}
	if err := json.Unmarshal(DockerConfigJSON("127.0.0.1:5000", "puller", "s3cret"), &got); err != nil {
		t.Fatal(err)
	}
	entry, ok := got.Auths["127.0.0.1:5000"]
	if !ok || len(got.Auths) != 1 {
		t.Fatalf("auths %+v, want one entry for 127.0.0.1:5000", got.Auths)
	}
	auth, err := base64.StdEncoding.DecodeString(entry.Auth)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"puller", "s3cret", "puller:s3cret"}
	if diff := cmp.Diff(want, []string{entry.Username, entry.Password, string(auth)}); diff != "" {
		t.Errorf("username, password, decoded auth (-want +got):\n%s", diff)
	}
}

func TestRequestKind(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodGet, "/v2/", "ping"},
		{http.MethodGet, "/v2", "ping"},
		{http.MethodHead, "/v2/team/app/manifests/1.0", "manifest HEAD"},
		{http.MethodGet, "/v2/team/app/blobs/sha256:abc", "blob GET"},
		{http.MethodPost, "/v2/team/app/blobs/uploads/", "blob POST"},
		{http.MethodGet, "/v2/_catalog", "other GET"},
	} {
		if got := RequestKind(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}
