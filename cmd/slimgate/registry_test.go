package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/registry"
)

// startRegistry serves an in-process registry on loopback holding the
// images, and returns its host:port.
func startRegistry(t *testing.T, images map[string]v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(devcluster.NewRegistry())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	for repo, img := range images {
		if err := devcluster.Push(host+"/"+repo, img); err != nil {
			t.Fatal(err)
		}
	}
	return host
}

func TestCheckRegistry(t *testing.T) {
	sdk := buildImage(t, goSDKEnv, goSDKSteps...)
	app := buildImage(t, multiStageEnv, multiStageSteps...)
	host := startRegistry(t, map[string]v1.Image{"golang-app:1.0": sdk, "app:1.0": app})
	sdkRef, appRef := host+"/golang-app:1.0", host+"/app:1.0"
	digest := func(img v1.Image) string {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}

	tests := []struct {
		name        string
		images      []string
		wantCode    int
		wantVerdict []string
		wantDigest  []string
	}{
		{name: "single-stage Go SDK", images: []string{sdkRef}, wantCode: exitDenied, wantVerdict: []string{"deny"}, wantDigest: []string{digest(sdk)}},
		{name: "multi-stage", images: []string{appRef}, wantCode: exitAllowed, wantVerdict: []string{"allow"}, wantDigest: []string{digest(app)}},
		{name: "both", images: []string{appRef, sdkRef}, wantCode: exitDenied, wantVerdict: []string{"allow", "deny"}, wantDigest: []string{digest(app), digest(sdk)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"check", "--insecure-registry", host, "--output", "json"}, tc.images...)
			code, out, errOut := runCLI(t, args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s\n%s", code, tc.wantCode, errOut, out)
			}
			checkKeys(t, out)
			r := decode(t, out)
			if len(r.Images) != len(tc.images) {
				t.Fatalf("%d entries, want %d", len(r.Images), len(tc.images))
			}
			for i, im := range r.Images {
				if im.Image != tc.images[i] || im.Verdict != tc.wantVerdict[i] || im.Digest != tc.wantDigest[i] {
					t.Errorf("entry %d: %s %s %s, want %s %s %s", i, im.Image, im.Verdict, im.Digest, tc.images[i], tc.wantVerdict[i], tc.wantDigest[i])
				}
				if im.Verdict == "deny" && !isGoDenial(rules(r, i)) {
					t.Errorf("entry %d: rules %q, want toolchain.go or build.go", i, rules(r, i))
				}
				if im.Verdict == "allow" && len(im.Findings) != 0 {
					t.Errorf("entry %d: findings %q, want none", i, rules(r, i))
				}
			}
		})
	}

	// Text output of the same: one summary line for the CI log.
	code, out, _ := runCLI(t, "check", "--insecure-registry", host, appRef, sdkRef)
	if code != exitDenied || !strings.HasSuffix(out, "\n2 images checked: 1 denied, 1 allowed\n") || !strings.Contains(out, "DENY  "+sdkRef+" (linux/amd64, sha256:") {
		t.Errorf("exit %d, text output:\n%s", code, out)
	}

	// Without --insecure-registry TLS is required, and a registry that does
	// not speak it cannot be read: exit 2. --egress-guard applies the
	// policy's registries rules, and the default refuses loopback: a
	// registry the policy refuses is the reference's fault, a denial.
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
		want string // in stderr
	}{
		{args: []string{"check", appRef}, code: exitError, out: "ERROR " + appRef, want: appRef},
		{args: []string{"check", "--egress-guard", "--insecure-registry", host, appRef}, code: exitDenied, out: "DENY  " + appRef, want: string(registry.ReasonEgressRefused)},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, want %d, %q and %q on stderr; stdout:\n%s\nstderr: %s", tc.args, code, tc.code, tc.out, tc.want, out, errOut)
		}
	}

	// An unknown tag is the reference's fault: a denial, the reason on
	// stderr.
	code, _, errOut := runCLI(t, "check", "--insecure-registry", host, host+"/absent:1.0")
	if code != exitDenied || !strings.Contains(errOut, "absent") {
		t.Errorf("exit %d stderr %q, want 1 naming the image", code, errOut)
	}
}

// TestCheckRegistryMirrors: with the cluster's mirrors, CI reads images
// where the nodes pull them: Docker Hub and quay.io names are judged from
// a loopback mirror, their upstreams never contacted (fallback off), from
// the YAML form as from containerd's hosts folder.
func TestCheckRegistryMirrors(t *testing.T) {
	sdk := buildImage(t, goSDKEnv, goSDKSteps...)
	app := buildImage(t, multiStageEnv, multiStageSteps...)
	mirror := startRegistry(t, map[string]v1.Image{"library/golang-app:1.0": sdk, "org/app:1.0": app})
	dir := t.TempDir()
	file := filepath.Join(dir, "mirrors.yaml")
	yaml := fmt.Sprintf("docker.io: {endpoints: [http://%s], fallback: false}\nquay.io: {endpoints: [http://%[1]s], fallback: false}\n", mirror)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "certs.d")
	for _, upstream := range []string{"docker.io", "quay.io"} {
		toml := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "https://"+mirror, "http://"+mirror)
		if err := os.MkdirAll(filepath.Join(hosts, upstream), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, upstream, "hosts.toml"), []byte(toml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, flag := range []string{"--registry-mirrors=" + file, "--registry-config-path=" + hosts} {
		code, out, errOut := runCLI(t, "check", flag, "--insecure-registry", mirror, "--output", "json", "golang-app:1.0", "quay.io/org/app:1.0")
		if code != exitDenied {
			t.Fatalf("%s: exit %d, want %d; stderr: %s\n%s", flag, code, exitDenied, errOut, out)
		}
		r := decode(t, out)
		if len(r.Images) != 2 || r.Images[0].Verdict != "deny" || r.Images[1].Verdict != "allow" || r.Images[0].Image != "golang-app:1.0" {
			t.Errorf("%s: report %+v, want golang-app denied and quay.io/org/app allowed", flag, r.Images)
		}
	}
	code, _, errOut := runCLI(t, "check", "--registry-mirrors", filepath.Join(dir, "missing.yaml"), "quay.io/org/app:1.0")
	if code != exitError || !strings.Contains(errOut, "registry mirrors") {
		t.Errorf("a missing mirrors file: exit %d, stderr %q", code, errOut)
	}
}
