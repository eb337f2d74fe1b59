package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"slimgate.dev/slimgate/internal/devcluster"
)

// Histories of the two kinds of image the tests judge.
var (
	// goSDKSteps is a single-stage Dockerfile on golang: the SDK ships.
	goSDKSteps = []string{
		"ADD file:3a1b2c in / # buildkit",
		`CMD ["bash"]`,
		"ENV GOLANG_VERSION=1.22.5",
		"ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"RUN /bin/sh -c set -eux; wget -O go.tgz https://dl.google.com/go/go1.22.5.linux-amd64.tar.gz; tar -C /usr/local -xzf go.tgz; rm go.tgz # buildkit",
		"WORKDIR /app",
		"COPY . . # buildkit",
		"RUN /bin/sh -c go build -o /app . # buildkit",
	}
	goSDKEnv = []string{"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GOLANG_VERSION=1.22.5"}

	// multiStageSteps is the final stage of a multi-stage build: alpine
	// plus the binary.
	multiStageSteps = []string{
		"ADD alpine-minirootfs-3.20.3-x86_64.tar.gz / # buildkit",
		`CMD ["/bin/sh"]`,
		"COPY /app/server /server # buildkit",
		`ENTRYPOINT ["/server"]`,
	}
	multiStageEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
)

// buildImage makes a linux/amd64 image whose config history is steps
// (see devcluster.ImageFromSteps).
func buildImage(t *testing.T, env []string, steps ...string) v1.Image {
	t.Helper()
	return buildFor(t, v1.Platform{OS: "linux", Architecture: "amd64"}, env, steps...)
}

// buildFor makes an image for platform whose config history is steps.
func buildFor(t *testing.T, platform v1.Platform, env []string, steps ...string) v1.Image {
	t.Helper()
	img, err := devcluster.ImageFromSteps(platform, env, 4096, steps...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes the images into an OCI layout, tagged, without
// their layer blobs: a check must need only manifests and configs.
func writeLayout(t *testing.T, images map[string]v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	if err := devcluster.WriteLayout(dir, images); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runCLI runs the command in process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// report is the pinned JSON output, decoded.
type report struct {
	Images []struct {
		Image    string `json:"image"`
		Digest   string `json:"digest"`
		Platform string `json:"platform"`
		Verdict  string `json:"verdict"`
		Findings []struct {
			Rule     string         `json:"rule"`
			Action   string         `json:"action"`
			Message  string         `json:"message"`
			Evidence map[string]any `json:"evidence"`
			Remedy   string         `json:"remedy"`
		} `json:"findings"`
		Size struct {
			Compressed int64 `json:"compressed"`
			Layers     int   `json:"layers"`
		} `json:"size"`
		Notes []string `json:"notes"`
		Error string   `json:"error"`
	} `json:"images"`
}

func decode(t *testing.T, stdout string) report {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	return r
}

func rules(r report, i int) []string {
	var ids []string
	for _, f := range r.Images[i].Findings {
		ids = append(ids, f.Rule)
	}
	return ids
}

// checkKeys asserts the pinned key names, which decoding into a struct
// would not notice missing.
func checkKeys(t *testing.T, stdout string) {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatal(err)
	}
	images, ok := raw["images"].([]any)
	if !ok || len(images) == 0 {
		t.Fatalf("images is %T, want a non-empty array", raw["images"])
	}
	for _, im := range images {
		m := im.(map[string]any)
		for _, k := range []string{"image", "digest", "verdict", "findings", "size"} {
			if _, ok := m[k]; !ok {
				t.Errorf("image entry lacks %q: %v", k, m)
			}
		}
		findings, ok := m["findings"].([]any)
		if !ok {
			t.Fatalf("findings is %T, want an array (never null)", m["findings"])
		}
		for _, f := range findings {
			for _, k := range []string{"rule", "action", "message", "evidence", "remedy"} {
				if _, ok := f.(map[string]any)[k]; !ok {
					t.Errorf("finding lacks %q: %v", k, f)
				}
			}
		}
		size, _ := m["size"].(map[string]any)
		for _, k := range []string{"compressed", "layers"} {
			if _, ok := size[k]; !ok {
				t.Errorf("size lacks %q: %v", k, m["size"])
			}
		}
	}
}

// isGoDenial reports whether a Go-SDK image was denied for the Go rules.
func isGoDenial(ids []string) bool {
	return slices.Contains(ids, "toolchain.go") || slices.Contains(ids, "build.go")
}

func TestCheckLayoutWithoutLayers(t *testing.T) {
	sdk := buildImage(t, goSDKEnv, goSDKSteps...)
	app := buildImage(t, multiStageEnv, multiStageSteps...)
	dir := writeLayout(t, map[string]v1.Image{"sdk": sdk, "app": app})
	sdkDigest, err := sdk.Digest()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI(t, "check", "--output", "json", "oci:"+dir+":sdk")
	if code != exitDenied {
		t.Fatalf("exit %d, want %d; stderr: %s", code, exitDenied, errOut)
	}
	checkKeys(t, out)
	r := decode(t, out)
	if len(r.Images) != 1 {
		t.Fatalf("%d image entries, want 1", len(r.Images))
	}
	im := r.Images[0]
	if im.Verdict != "deny" || im.Digest != sdkDigest.String() || im.Image != "oci:"+dir+":sdk" || im.Platform != "linux/amd64" {
		t.Errorf("entry %+v: want a deny of oci:%s:sdk, digest %s, linux/amd64", im, dir, sdkDigest)
	}
	if !isGoDenial(rules(r, 0)) {
		t.Errorf("rules %q, want toolchain.go or build.go", rules(r, 0))
	}
	if im.Size.Layers != 4 || im.Size.Compressed <= 0 {
		t.Errorf("size %+v, want 4 layers and a positive size", im.Size)
	}
	for _, f := range im.Findings {
		if f.Action != "deny" || f.Message == "" || f.Remedy == "" {
			t.Errorf("finding %+v: want a deny with message and remedy", f)
		}
	}

	code, out, errOut = runCLI(t, "check", "--output", "json", "oci:"+dir+":app")
	if code != exitAllowed {
		t.Fatalf("exit %d, want %d; stderr: %s\n%s", code, exitAllowed, errOut, out)
	}
	checkKeys(t, out)
	r = decode(t, out)
	if len(r.Images) != 1 || r.Images[0].Verdict != "allow" || len(r.Images[0].Findings) != 0 {
		t.Errorf("got %+v, want one allow without findings", r.Images)
	}
	if !strings.Contains(out, `"findings": []`) {
		t.Errorf("findings must be [] when empty:\n%s", out)
	}
}

func TestCheckLayoutNeedsTag(t *testing.T) {
	dir := writeLayout(t, map[string]v1.Image{
		"sdk": buildImage(t, goSDKEnv, goSDKSteps...),
		"app": buildImage(t, multiStageEnv, multiStageSteps...),
	})
	// The reference names no one image: as in the webhook, that is the
	// reference's fault, an inspection.invalid denial.
	code, out, errOut := runCLI(t, "check", "oci:"+dir)
	if code != exitDenied {
		t.Fatalf("exit %d, want %d", code, exitDenied)
	}
	for _, s := range []string{"oci:PATH:TAG", "sdk", "app"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr does not mention %q:\n%s", s, errOut)
		}
	}
	if !strings.Contains(out, "DENY  oci:"+dir) || !strings.Contains(out, "inspection.invalid") || !strings.Contains(out, "1 image checked: 1 denied, 0 allowed") {
		t.Errorf("text output does not report the denial:\n%s", out)
	}
}

func TestCheckTextOutput(t *testing.T) {
	dir := writeLayout(t, map[string]v1.Image{
		"sdk": buildImage(t, goSDKEnv, goSDKSteps...),
		"app": buildImage(t, multiStageEnv, multiStageSteps...),
	})
	// Flags may follow the images.
	code, out, errOut := runCLI(t, "check", "oci:"+dir+":sdk", "oci:"+dir+":app", "--output", "text")
	if code != exitDenied {
		t.Fatalf("exit %d, want %d; stderr: %s", code, exitDenied, errOut)
	}
	for _, want := range []string{
		"DENY  oci:" + dir + ":sdk (linux/amd64, sha256:",
		"in 4 layers)",
		"evidence: history #",
		"RUN /bin/sh -c",
		"remedy: ",
		"toolchain layers: ",
		"ALLOW oci:" + dir + ":app (linux/amd64, sha256:",
		"\n2 images checked: 1 denied, 1 allowed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "] toolchain.go: ") && !strings.Contains(out, "] build.go: ") {
		t.Errorf("output names neither toolchain.go nor build.go:\n%s", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("output has terminal escape codes:\n%q", out)
	}
}

func TestCheckDockerArchive(t *testing.T) {
	dir := t.TempDir()
	sdkTag, err := name.NewTag("golang-app:1.0")
	if err != nil {
		t.Fatal(err)
	}
	appTag, err := name.NewTag("app:1.0")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		img  v1.Image
		tag  name.Tag
		want int
	}{
		{buildImage(t, goSDKEnv, goSDKSteps...), sdkTag, exitDenied},
		{buildImage(t, multiStageEnv, multiStageSteps...), appTag, exitAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.tag.String(), func(t *testing.T) {
			file := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(tc.tag.String())+".tar")
			if err := tarball.WriteToFile(file, tc.tag, tc.img); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runCLI(t, "check", "--output=json", "docker-archive:"+file)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stderr: %s\n%s", code, tc.want, errOut, out)
			}
			checkKeys(t, out)
			r := decode(t, out)
			id, err := tc.img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			if r.Images[0].Digest != id.String() || len(r.Images[0].Notes) == 0 {
				t.Errorf("digest %s notes %q, want the image ID %s and a note saying so", r.Images[0].Digest, r.Images[0].Notes, id)
			}
			if tc.want == exitDenied && !isGoDenial(rules(r, 0)) {
				t.Errorf("rules %q, want toolchain.go or build.go", rules(r, 0))
			}
		})
	}
}

func writePolicy(t *testing.T, doc string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

const policyHeader = "apiVersion: slimgate.dev/v1alpha1\nkind: SlimImagePolicy\nmetadata:\n  name: test\n"

func TestCheckPolicy(t *testing.T) {
	dir := writeLayout(t, map[string]v1.Image{"sdk": buildImage(t, goSDKEnv, goSDKSteps...)})
	sdk := "oci:" + dir + ":sdk"
	missing := "oci:" + filepath.Join(dir, "missing")
	unreachable := "127.0.0.1:1/app:v1" // nothing listens there
	tests := []struct {
		name       string
		policy     string
		image      string
		wantCode   int
		wantAction string // every finding's action
		wantRules  []string
		wantError  bool
	}{
		{name: "warn mode allows", policy: policyHeader + "spec:\n  mode: Warn\n", image: sdk, wantCode: exitAllowed, wantAction: "warn"},
		{name: "audit mode allows", policy: policyHeader + "spec:\n  mode: Audit\n", image: sdk, wantCode: exitAllowed, wantAction: "audit"},
		{name: "allowing the go rules", policy: policyHeader + "spec:\n  toolchains:\n    allow: [\"toolchain.go\", \"build.go\"]\n", image: sdk, wantCode: exitAllowed},
		{name: "layer budget", policy: policyHeader + "spec:\n  toolchains:\n    allow: [\"toolchain.*\", \"build.*\"]\n  sizeBudget:\n    maxLayers: 2\n", image: sdk, wantCode: exitDenied, wantAction: "deny", wantRules: []string{"size.layers"}},
		{name: "inspection error allowed is exit 2", policy: policyHeader + "spec:\n  onInspectionError: Allow\n", image: unreachable, wantCode: exitError, wantError: true},
		{name: "inspection error denied is a denial", policy: policyHeader + "spec:\n  onInspectionError: Deny\n", image: unreachable, wantCode: exitDenied, wantAction: "deny", wantRules: []string{"inspection.failed"}},
		{name: "an image that is not there is a denial whatever onInspectionError", policy: policyHeader + "spec:\n  onInspectionError: Allow\n", image: missing, wantCode: exitDenied, wantAction: "deny", wantRules: []string{"inspection.invalid"}},
		{name: "an invalid image follows the mode", policy: policyHeader + "spec:\n  mode: Audit\n  onInspectionError: Deny\n", image: missing, wantCode: exitAllowed, wantAction: "audit", wantRules: []string{"inspection.invalid"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "check", "--policy", writePolicy(t, tc.policy), "--output", "json", tc.image)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s\n%s", code, tc.wantCode, errOut, out)
			}
			checkKeys(t, out)
			r := decode(t, out)
			im := r.Images[0]
			if (im.Error != "") != tc.wantError {
				t.Errorf("error %q, want one: %v", im.Error, tc.wantError)
			}
			if tc.wantAction == "" && len(im.Findings) > 0 {
				t.Errorf("findings %q, want none", rules(r, 0))
			}
			for _, f := range im.Findings {
				if f.Action != tc.wantAction {
					t.Errorf("%s: action %s, want %s", f.Rule, f.Action, tc.wantAction)
				}
			}
			if tc.wantRules != nil {
				if diff := cmp.Diff(tc.wantRules, rules(r, 0)); diff != "" {
					t.Errorf("rules (-want +got):\n%s", diff)
				}
			}
			if tc.wantAction == "warn" && !isGoDenial(rules(r, 0)) {
				t.Errorf("rules %q, want the Go rules as warnings", rules(r, 0))
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badPolicy := writePolicy(t, policyHeader+"spec:\n  mode: Enforce\n  bogusField: 1\n")
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{args: nil, want: "usage"},
		{args: []string{"frobnicate"}, want: `unknown command "frobnicate"`},
		{args: []string{"check"}, want: "no image"},
		{args: []string{"check", "--bogus", "x"}, want: "bogus"},
		{args: []string{"check", "--output", "yaml", "x"}, want: "--output"},
		{args: []string{"check", "--platform", "linux", "x"}, want: "--platform"},
		{args: []string{"check", "--timeout", "0s", "x"}, want: "--timeout"},
		{args: []string{"check", "--insecure-registry", "", "x"}, want: "insecure-registry"},
		{args: []string{"check", "--policy", filepath.Join(dir, "absent.yaml"), "x"}, want: "--policy"},
		{args: []string{"check", "--policy", badPolicy, "x"}, want: "spec.bogusField"},
		{args: []string{"check", "--", "--output"}, want: "is not an image"},
		{args: []string{"version", "now"}, want: "no arguments"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not mention %q", errOut, tc.want)
			}
		})
	}
}

func TestParseCheck(t *testing.T) {
	tests := []struct {
		args []string
		want options
	}{
		{
			args: []string{"a", "--output", "json", "b", "--insecure-registry", "r1:5000", "--insecure-registry=r2"},
			want: options{output: "json", insecure: hostList{"r1:5000", "r2"}, images: []string{"a", "b"}, namespace: "default"},
		},
		{
			args: []string{"--platform", "linux/arm64/v8", "--egress-guard", "a", "--", "b", "c"},
			want: options{output: "text", platform: "linux/arm64/v8", egressGuard: true, images: []string{"a", "b", "c"}, namespace: "default"},
		},
		{
			args: []string{"a", "--exceptions", "x.yaml", "--namespace=ci"},
			want: options{output: "text", images: []string{"a"}, exceptionsFile: "x.yaml", namespace: "ci"},
		},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseCheck(tc.args, &stderr)
			if err != nil {
				t.Fatalf("parseCheck: %v", err)
			}
			tc.want.timeout = got.timeout
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(options{})); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != exitAllowed || strings.TrimSpace(out) == "" {
		t.Errorf("exit %d output %q, want 0 and a version", code, out)
	}
	if got := versionString("v1.2.3"); got != "v1.2.3" {
		t.Errorf("versionString(v1.2.3) = %q", got)
	}
}

func TestCheckMultiPlatformLayout(t *testing.T) {
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx, err := devcluster.PlatformIndex(buildImage(t, goSDKEnv, goSDKSteps...), buildFor(t, arm64, goSDKEnv, goSDKSteps...))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := devcluster.WriteIndexLayout(dir, idx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{args: nil, want: []string{"linux/amd64", "linux/arm64/v8"}},
		{args: []string{"--platform", "linux/arm64"}, want: []string{"linux/arm64/v8"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append(append([]string{"check", "--output", "json"}, tc.args...), "oci:"+dir)
			code, out, errOut := runCLI(t, args...)
			if code != exitDenied {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitDenied, errOut)
			}
			r := decode(t, out)
			var got []string
			for i, im := range r.Images {
				got = append(got, im.Platform)
				if im.Verdict != "deny" || !isGoDenial(rules(r, i)) {
					t.Errorf("%s: verdict %s rules %q, want a Go denial", im.Platform, im.Verdict, rules(r, i))
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("platforms judged (-want +got):\n%s", diff)
			}
		})
	}
	// A platform the index lacks is the image's (or the caller's) fault.
	code, _, errOut := runCLI(t, "check", "--platform", "linux/s390x", "oci:"+dir)
	if code != exitDenied || !strings.Contains(errOut, "linux/arm64/v8") {
		t.Errorf("exit %d stderr %q, want 1 listing the platforms", code, errOut)
	}
}
