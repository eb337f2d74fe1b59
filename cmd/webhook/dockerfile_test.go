package main

// This file checks that slimgate's own image passes slimgate. No Docker
// engine or BuildKit exists where the tests run, so the image cannot be
// built here: instead the test reads the repository's Dockerfile and
// models, with go-containerregistry, the image a BuildKit build would
// produce. It writes the history lines BuildKit writes for each
// instruction (`COPY /out/webhook /webhook # buildkit`, `USER ...`,
// `ENTRYPOINT [...]`), starts from real base image configs in
// pkg/policy/testdata/images, and puts the actually compiled webhook
// binary in the layer its COPY adds, so the size is real. Then it runs the
// default policy on the model. Layers whose content is not modelled (base
// layers, RUN and context COPY steps of the build stage) have a declared
// size only: the policy reads sizes from the manifest, never the blobs.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/image"
	"slimgate.dev/slimgate/pkg/policy"
)

// Nominal sizes of layers whose content the model does not reproduce.
const (
	// distrolessBytes bounds gcr.io/distroless/static-debian12 (about 1 MB
	// compressed, as published); its fixture records no layer sizes.
	distrolessBytes = 2 << 20
	// contextCopyBytes is a COPY from the build context (the source tree).
	contextCopyBytes = 4 << 20
	// runBytes is what a RUN step of the build stage adds.
	runBytes = 1 << 20
)

// baseFixtures maps base image references (by prefix) to the real config
// fixtures standing in for them. golang:1.24.4-bookworm stands in for the
// pinned golang:1.26 image: same Debian base and the same Go SDK layout.
var baseFixtures = []struct{ prefix, file string }{
	{"gcr.io/distroless/static-debian12:", "distroless-static-debian12.json"},
	{"golang:", "golang-1.24.4-bookworm.json"},
}

// buildArgs are the values BuildKit gives the platform and --build-arg
// arguments in the model.
var buildArgs = map[string]string{"BUILDPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64", "VERSION": "dev"}

func TestDockerfile(t *testing.T) {
	artifacts := map[string]v1.Layer{"/out/webhook": webhookLayer(t)}
	t.Run("the webhook image passes the default policy", func(t *testing.T) { testImagePasses(t, artifacts) })
	t.Run("control: FROM the build stage is denied", func(t *testing.T) { testControl(t, artifacts) })
}

func testImagePasses(t *testing.T, artifacts map[string]v1.Layer) {
	stages := readDockerfile(t)
	final := stages[len(stages)-1]
	if final.base != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage is FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.base)
	}
	m := &model{t: t, stages: stages, artifacts: artifacts}
	img := m.image(len(stages) - 1)

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if want := []string{"/webhook"}; !slices.Equal(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, want)
	}
	var lines []string
	for _, h := range cf.History {
		lines = append(lines, h.CreatedBy)
	}
	for _, want := range []string{"COPY /out/webhook /webhook # buildkit", "USER 65532:65532", `ENTRYPOINT ["/webhook"]`} {
		if !slices.Contains(lines, want) {
			t.Errorf("history %q lacks %q", lines, want)
		}
	}

	res := judge(t, img)
	if res.Verdict != policy.VerdictAllow || len(res.Findings) != 0 {
		t.Errorf("the webhook image is %s with findings:\n%s", res.Verdict, res.Summary())
	}
	budget := policy.Default().Spec.SizeBudget
	if limit := budget.MaxCompressed.Value(); res.Size.Compressed > limit {
		t.Errorf("compressed size %d over the default budget %d", res.Size.Compressed, limit)
	}
	if limit := int(*budget.MaxLayers); res.Size.Layers > limit {
		t.Errorf("%d layers, over the default budget of %d", res.Size.Layers, limit)
	}
	t.Logf("modelled webhook image: %d layers, %s compressed (budget %s)", res.Size.Layers,
		policy.HumanBytes(res.Size.Compressed), policy.HumanBytes(budget.MaxCompressed.Value()))
}

// testControl checks the model can reject: the same Dockerfile with the
// final stage built FROM the build stage (a single-stage build in effect)
// ships the Go SDK and must be denied for it.
func testControl(t *testing.T, artifacts map[string]v1.Layer) {
	stages := readDockerfile(t)
	stages[len(stages)-1].base = stages[0].name
	m := &model{t: t, stages: stages, artifacts: artifacts}
	res := judge(t, m.image(len(stages)-1))
	if res.Verdict != policy.VerdictDeny {
		t.Fatalf("a webhook image FROM the build stage is %s, want deny", res.Verdict)
	}
	if !slices.ContainsFunc(res.Findings, func(f policy.Finding) bool { return f.Rule == "toolchain.go" }) {
		t.Errorf("denied, but not for the Go toolchain:\n%s", res.Summary())
	}
	t.Logf("control verdict %s: %s", res.Verdict, res.Summary())
}

func judge(t *testing.T, img v1.Image) policy.Result {
	t.Helper()
	f, err := image.FromImage(img, "ghcr.io/slimgate/slimgate-webhook:model")
	if err != nil {
		t.Fatal(err)
	}
	return policy.Evaluate(nil, f)
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: RUN, COPY, ...
	args string
}

// stage is one FROM and the instructions after it.
type stage struct {
	base, name string
	steps      []instruction
}

func readDockerfile(t *testing.T) []stage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(data)
	if err != nil {
		t.Fatal(err)
	}
	return stages
}

// parseDockerfile reads the stages of a Dockerfile: comments and blank
// lines dropped, backslash continuations joined. Heredocs and escape
// directives are not supported (the repository's Dockerfile has none).
func parseDockerfile(data []byte) ([]stage, error) {
	var stages []stage
	var pending string
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			pending += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		full := pending + trimmed
		pending = ""
		cmd, args, _ := strings.Cut(full, " ")
		cmd, args = strings.ToUpper(cmd), strings.TrimSpace(args)
		if cmd == "FROM" {
			fields := slices.DeleteFunc(strings.Fields(args), func(f string) bool { return strings.HasPrefix(f, "--") })
			s := stage{}
			switch {
			case len(fields) == 1:
				s.base = fields[0]
			case len(fields) == 3 && strings.EqualFold(fields[1], "AS"):
				s.base, s.name = fields[0], fields[2]
			default:
				return nil, fmt.Errorf("cannot read FROM %s", args)
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if cmd == "ARG" {
				continue // global ARGs: only FROM lines see them
			}
			return nil, fmt.Errorf("%s before the first FROM", cmd)
		}
		last := &stages[len(stages)-1]
		last.steps = append(last.steps, instruction{cmd: cmd, args: args})
	}
	if pending != "" {
		return nil, errors.New("the file ends in a continuation line")
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

// model computes the image BuildKit would build for a stage.
type model struct {
	t      *testing.T
	stages []stage
	// artifacts are the real layers of files copied from another stage,
	// by source path.
	artifacts map[string]v1.Layer
}

// state is a stage's image as it is being built.
type state struct {
	layers  []v1.Layer
	history []v1.History
	config  v1.Config
	os      string
	arch    string
}

func (m *model) image(i int) v1.Image {
	m.t.Helper()
	st := m.build(i)
	img, err := devcluster.Assemble(st.layers, &v1.ConfigFile{OS: st.os, Architecture: st.arch, History: st.history, Config: st.config})
	if err != nil {
		m.t.Fatal(err)
	}
	return img
}

func (m *model) build(i int) state {
	m.t.Helper()
	s := m.stages[i]
	var st state
	if j := slices.IndexFunc(m.stages[:i], func(o stage) bool { return o.name != "" && o.name == s.base }); j >= 0 {
		st = m.build(j)
	} else {
		st = m.base(s.base)
	}
	args := map[string]string{}
	var argOrder []string
	for n, step := range s.steps {
		layerID := fmt.Sprintf("%s/%d/%s", s.name, n, step.args)
		switch step.cmd {
		case "ARG":
			for _, kv := range strings.Fields(step.args) {
				k, v, ok := strings.Cut(kv, "=")
				if bv, given := buildArgs[k]; given || !ok {
					v = bv
				}
				if _, seen := args[k]; !seen {
					argOrder = append(argOrder, k)
				}
				args[k] = v
			}
		case "RUN":
			cmd := dropFlags(step.args, nil)
			if strings.HasPrefix(cmd, "[") {
				var argv []string
				if err := json.Unmarshal([]byte(cmd), &argv); err != nil {
					m.t.Fatalf("RUN %s: %v", cmd, err)
				}
				cmd = strings.Join(argv, " ")
			} else {
				cmd = "/bin/sh -c " + cmd
			}
			// BuildKit records the build arguments in scope as "|N K=V ...".
			if len(argOrder) > 0 {
				prefix := []string{fmt.Sprintf("|%d", len(argOrder))}
				for _, k := range argOrder {
					prefix = append(prefix, k+"="+args[k])
				}
				cmd = strings.Join(prefix, " ") + " " + cmd
			}
			st.add("RUN "+cmd+" # buildkit", declaredLayer{id: layerID, size: runBytes})
		case "COPY", "ADD":
			var from string
			paths := dropFlags(step.args, func(flag string) {
				if v, ok := strings.CutPrefix(flag, "--from="); ok {
					from = v
				}
			})
			var layer v1.Layer = declaredLayer{id: layerID, size: contextCopyBytes}
			if from != "" {
				src := strings.Fields(paths)[0]
				built, ok := m.artifacts[src]
				if !ok {
					m.t.Fatalf("%s --from=%s %s: no built artifact for %s in the model", step.cmd, from, paths, src)
				}
				layer = built
			}
			st.add(step.cmd+" "+paths+" # buildkit", layer)
		case "WORKDIR":
			st.config.WorkingDir = step.args
			st.add("WORKDIR "+step.args, declaredLayer{id: layerID, size: 128})
		case "ENV":
			k, v, _ := strings.Cut(step.args, "=")
			st.config.Env = append(slices.DeleteFunc(st.config.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") }), k+"="+v)
			st.add("ENV "+step.args, nil)
		case "USER":
			st.config.User = step.args
			st.add("USER "+step.args, nil)
		case "ENTRYPOINT", "CMD":
			argv := execForm(m.t, step.args)
			if step.cmd == "ENTRYPOINT" {
				st.config.Entrypoint = argv
			} else {
				st.config.Cmd = argv
			}
			st.add(step.cmd+" "+step.args, nil)
		case "LABEL", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK", "VOLUME", "SHELL":
			st.add(step.cmd+" "+step.args, nil)
		default:
			m.t.Fatalf("the model does not know %s", step.cmd)
		}
	}
	return st
}

// add appends a history line and, unless nil, the layer it adds.
func (st *state) add(createdBy string, l v1.Layer) {
	h := v1.History{CreatedBy: createdBy, Comment: "buildkit.dockerfile.v0", EmptyLayer: l == nil}
	st.history = append(slices.Clone(st.history), h)
	if l != nil {
		st.layers = append(slices.Clone(st.layers), l)
	}
}

// base is a base image from its real config fixture.
func (m *model) base(ref string) state {
	m.t.Helper()
	i := slices.IndexFunc(baseFixtures, func(b struct{ prefix, file string }) bool { return strings.HasPrefix(ref, b.prefix) })
	if i < 0 {
		m.t.Fatalf("no config fixture models the base image %s", ref)
	}
	fx, err := devcluster.ReadFixture(filepath.Join("..", "..", "pkg", "policy", "testdata", "images", baseFixtures[i].file))
	if err != nil {
		m.t.Fatal(err)
	}
	st := state{config: fx.Config.Config, history: fx.Config.History, os: fx.Config.OS, arch: fx.Config.Architecture}
	if len(fx.Config.History) == 0 {
		// The distroless fixture leaves out rules_oci's history (one
		// "bazel build <label>" entry per layer, labels unrecorded): one
		// layer, with an entry of that form.
		st.history = []v1.History{{CreatedBy: "bazel build (distroless static-debian12, label unrecorded)"}}
		fx.LayerSizes = []int64{distrolessBytes}
	}
	for n, size := range fx.LayerSizes {
		st.layers = append(st.layers, declaredLayer{id: fmt.Sprintf("%s/%d", ref, n), size: size})
	}
	return st
}

// dropFlags removes the leading --flags of an instruction's arguments,
// passing each to seen (nil: ignored).
func dropFlags(args string, seen func(string)) string {
	for strings.HasPrefix(args, "--") {
		flag, rest, _ := strings.Cut(args, " ")
		if seen != nil {
			seen(flag)
		}
		args = strings.TrimSpace(rest)
	}
	return args
}

// execForm reads the JSON form of ENTRYPOINT or CMD; the shell form runs
// under /bin/sh -c.
func execForm(t *testing.T, args string) []string {
	t.Helper()
	if !strings.HasPrefix(args, "[") {
		return []string{"/bin/sh", "-c", args}
	}
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatalf("%s: %v", args, err)
	}
	return argv
}

// webhookLayer compiles the webhook as the Dockerfile does and returns a
// layer holding it at /webhook, gzip-compressed like BuildKit's layers.
func webhookLayer(t *testing.T) v1.Layer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "webhook")
	// The Dockerfile also sets -trimpath and CGO_ENABLED=0; both change
	// every package's build key, so a fresh machine would compile the whole
	// dependency tree a second time. Without them the build reuses what
	// `go test` compiled, and the binary's size differs by well under 1%.
	cmd := exec.Command("go", "build", "-ldflags", "-s -w -X main.version=model", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the webhook: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "webhook", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	content := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(content)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// declaredLayer is a layer known by its compressed size only: enough for
// a manifest, which is all the policy reads.
type declaredLayer struct {
	id   string
	size int64
}

func (l declaredLayer) hash(kind string) v1.Hash {
	sum := sha256.Sum256([]byte(kind + "\x00" + l.id))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// Digest implements v1.Layer.
func (l declaredLayer) Digest() (v1.Hash, error) { return l.hash("blob"), nil }

// DiffID implements v1.Layer.
func (l declaredLayer) DiffID() (v1.Hash, error) { return l.hash("diff"), nil }

// Compressed implements v1.Layer; the content is not modelled.
func (l declaredLayer) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("declared layer: no content")
}

// Uncompressed implements v1.Layer; the content is not modelled.
func (l declaredLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("declared layer: no content")
}

// Size implements v1.Layer.
func (l declaredLayer) Size() (int64, error) { return l.size, nil }

// MediaType implements v1.Layer.
func (l declaredLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
