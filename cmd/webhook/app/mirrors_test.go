package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slimgate.dev/slimgate/cmd/webhook/app"
)

// A mirror configuration the webhook cannot honour stops it before it
// serves anything: it never judges images from the wrong place.
func TestBadRegistryMirrorsFailRun(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mirrors.yaml")
	if err := os.WriteFile(file, []byte(`docker.io: {endpoints: ["ftp://mirror.example"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "certs.d", "docker.io")
	if err := os.MkdirAll(hosts, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte("[host.\"https://m\"]\n  skip_verify = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range []app.Options{
		{RegistryMirrors: file},
		{RegistryConfigPath: filepath.Dir(hosts)},
		{RegistryMirrors: filepath.Join(dir, "missing.yaml")},
	} {
		err := app.Run(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "registry mirrors") {
			t.Errorf("Run with %+v returned %v, want an error about the registry mirrors", o, err)
		}
	}
}
