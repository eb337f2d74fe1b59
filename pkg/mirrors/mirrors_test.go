package mirrors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	table, err := Parse([]byte(`
docker.io:
  endpoints: ["https://Mirror.Example:5000", "http://10.0.0.5:5000/v2/"]
quay.io:
  endpoints: ["https://harbor.example/v2/quay-proxy"]
  fallback: false
_default:
  endpoints: ["https://catch-all.example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	checkMirrors(t, table, map[string]Mirror{
		"index.docker.io": {Fallback: true, Endpoints: []Endpoint{
			{Scheme: "https", Host: "mirror.example:5000", Resolve: true},
			{Scheme: "http", Host: "10.0.0.5:5000", Resolve: true},
		}},
		"QUAY.io": {Endpoints: []Endpoint{{Scheme: "https", Host: "harbor.example", Prefix: "quay-proxy", Resolve: true}}},
		"ghcr.io": {Fallback: true, Endpoints: []Endpoint{{Scheme: "https", Host: "catch-all.example", Resolve: true}}},
	})
	want := []string{"10.0.0.5:5000", "catch-all.example", "harbor.example", "mirror.example:5000"}
	if diff := cmp.Diff(want, table.EndpointHosts()); diff != "" {
		t.Errorf("endpoint hosts (-want +got):\n%s", diff)
	}
	if got := (Endpoint{Scheme: "https", Host: "h", Prefix: "p"}).Repository("library/nginx"); got != "p/library/nginx" {
		t.Errorf("prefixed repository %q", got)
	}
	var none *Table
	if _, ok := none.For("docker.io"); ok || none.Len() != 0 || none.EndpointHosts() != nil {
		t.Error("a nil table has mirrors")
	}
}

// checkMirrors checks the mirror table gives for each upstream host.
func checkMirrors(t *testing.T, table *Table, want map[string]Mirror) {
	t.Helper()
	for host, w := range want {
		got, ok := table.For(host)
		if !ok {
			t.Errorf("%s: no mirror", host)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", host, diff)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	many := func(n int, format string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, format, i)
		}
		return b.String()
	}
	for _, c := range []struct{ name, doc, want string }{
		{"unknown key", `docker.io: {endpoints: ["https://m"], fallbak: false}`, "unknown field"},
		{"no endpoints", `docker.io: {endpoints: []}`, "no endpoints"},
		{"scheme", `docker.io: {endpoints: ["ftp://m"]}`, "scheme"},
		{"no scheme", `docker.io: {endpoints: ["mirror.example"]}`, "scheme"},
		{"user", `docker.io: {endpoints: ["https://u:p@m"]}`, "only scheme, host and path"},
		{"query", `docker.io: {endpoints: ["https://m?x=1"]}`, "only scheme, host and path"},
		{"path", `docker.io: {endpoints: ["https://m/mirror"]}`, "the path must be"},
		{"bad prefix", `docker.io: {endpoints: ["https://m/v2/UPPER"]}`, "not a repository prefix"},
		{"port", `docker.io: {endpoints: ["https://m:99999"]}`, "bad port"},
		{"upstream pattern", `"*.io": {endpoints: ["https://m"]}`, "not a host"},
		{"upstream path", `"docker.io/library": {endpoints: ["https://m"]}`, "not a host"},
		{"twice", `{docker.io: {endpoints: ["https://m"]}, index.docker.io: {endpoints: ["https://n"]}}`, "configured twice"},
		{"duplicate endpoint", `docker.io: {endpoints: ["https://m", "https://M/v2"]}`, "listed twice"},
		{"too many endpoints", `docker.io: {endpoints: [` + strings.TrimSuffix(many(MaxEndpoints+1, `"https://m%d",`), ",") + `]}`, "more than the 8 allowed"},
		{"too many hosts", many(MaxHosts+1, "r%d.example: {endpoints: [\"https://m\"]}\n"), "more than the 64 allowed"},
		{"too large", "# " + strings.Repeat("x", MaxFileBytes), "bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mirrors.yaml")
	if err := os.WriteFile(file, []byte(`docker.io: {endpoints: ["https://m"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	table, err := Load(file)
	if err != nil || table.Len() != 1 {
		t.Fatalf("Load: %v, %d hosts", err, table.Len())
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a file over the cap: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}
