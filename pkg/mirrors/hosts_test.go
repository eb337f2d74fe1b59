package mirrors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeHosts writes DIR/<folder>/hosts.toml for each folder.
func writeHosts(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for folder, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, folder), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, folder, "hosts.toml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDir(t *testing.T) {
	dir := writeHosts(t, map[string]string{
		// Written in the order containerd tries them, which is not the
		// order of their names.
		"docker.io": `server = "https://registry-1.docker.io"

[host."https://zz-mirror.example:5000"]
  capabilities = ["pull", "resolve"]
  dial_timeout = "2s"

[host."http://10.0.0.5:5000"]
  capabilities = ["pull"]

[host."aa-push-only.example"]
  capabilities = ["push"]
`,
		"quay.io": `server = "https://harbor.example"

[host."https://harbor.example/v2/quay-proxy"]
  override_path = true
`,
		"registry.local_5000_": `[host."https://mirror.local"]
`,
		"ghcr.io":  `server = "https://ghcr.io"`, // no mirror
		"..data":   `[host."https://ignored.example"]`,
		"_default": `[host."https://catch-all.example"]`,
	})
	if err := os.Mkdir(filepath.Join(dir, "no-file.example"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	table, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if table.Len() != 4 {
		t.Errorf("%d hosts, want docker.io, quay.io, registry.local:5000 and _default", table.Len())
	}
	checkMirrors(t, table, map[string]Mirror{
		"index.docker.io": {Fallback: true, Endpoints: []Endpoint{
			{Scheme: "https", Host: "zz-mirror.example:5000", Resolve: true},
			{Scheme: "http", Host: "10.0.0.5:5000"},
		}},
		"quay.io": {Endpoints: []Endpoint{
			{Scheme: "https", Host: "harbor.example", Prefix: "quay-proxy", Resolve: true},
			{Scheme: "https", Host: "harbor.example", Resolve: true},
		}},
		"registry.local:5000": {Fallback: true, Endpoints: []Endpoint{{Scheme: "https", Host: "mirror.local", Resolve: true}}},
		"ghcr.io":             {Fallback: true, Endpoints: []Endpoint{{Scheme: "https", Host: "catch-all.example", Resolve: true}}},
	})
}

func TestLoadDirRefuses(t *testing.T) {
	for _, c := range []struct{ name, file, want string }{
		{"unknown key", `[host."https://m"]
  capabilitis = ["pull"]`, "capabilitis"},
		{"ca", `[host."https://m"]
  ca = "/etc/containerd/certs.d/m/ca.crt"`, "not supported"},
		{"skip_verify", `[host."https://m"]
  skip_verify = true`, "not supported"},
		{"header", `[host."https://m".header]
  x-token = "secret"`, "header is not supported"},
		{"server with ca", `server = "https://docker.io"
ca = "ca.crt"
[host."https://m"]`, "not supported"},
		{"capability", `[host."https://m"]
  capabilities = ["pull", "fly"]`, "unknown capability"},
		{"path without override", `[host."https://m/mirror"]`, "the path must be"},
		{"inline hosts", `host = { "https://m" = {} }`, `[host."URL"] table`},
		{"too many hosts", strings.Repeat("[host.\"https://m", 1) + `1"]` + "\n" + func() string {
			var b strings.Builder
			for _, s := range []string{"2", "3", "4", "5", "6", "7", "8", "9"} {
				b.WriteString(`[host."https://m` + s + `"]` + "\n")
			}
			return b.String()
		}(), "more than the 8 allowed"},
		{"not TOML", `[host."https://m"`, "hosts.toml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadDir(writeHosts(t, map[string]string{"docker.io": c.file}))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	many := map[string]string{}
	for i := range MaxHosts + 1 {
		many[fmt.Sprintf("r%d.example", i)] = `[host."https://m"]`
	}
	if _, err := LoadDir(writeHosts(t, many)); err == nil || !strings.Contains(err.Error(), "more than the 64 hosts allowed") {
		t.Errorf("65 hosts: %v", err)
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing folder loaded")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := writeHosts(t, map[string]string{"docker.io": `[host."https://m"]`})
	file := filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(file, []byte(`quay.io: {endpoints: ["https://m"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if table, err := LoadConfig("", ""); err != nil || table != nil {
		t.Errorf("no flags: %v, %v", table, err)
	}
	if table, err := LoadConfig(file, ""); err != nil || table.Len() != 1 {
		t.Errorf("file: %v", err)
	}
	if table, err := LoadConfig("", dir); err != nil || table.Len() != 1 {
		t.Errorf("folder: %v", err)
	}
	if _, err := LoadConfig(file, dir); err == nil {
		t.Error("both accepted")
	}
}
