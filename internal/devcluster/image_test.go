package devcluster

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

var testHistory = []v1.History{
	{CreatedBy: "FROM scratch base"},
	{CreatedBy: "ENV A=1", EmptyLayer: true},
	{CreatedBy: "COPY . ."},
	{CreatedBy: "RUN go build -o /app ."},
	{CreatedBy: `CMD ["/app"]`, EmptyLayer: true},
}

// fileSizes returns the size of the one file in each layer of img.
func fileSizes(t *testing.T, img v1.Image) []int64 {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var total int64
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			total += h.Size
		}
		rc.Close()
		sizes = append(sizes, total)
	}
	return sizes
}

func TestBuildImage(t *testing.T) {
	env := []string{"PATH=/usr/bin", "A=1"}
	for _, tc := range []struct {
		name            string
		layer, last     int64
		wantLayerSizes  []int64
		wantMinLastComp int64
	}{
		{name: "equal layers", layer: 256, wantLayerSizes: []int64{256, 256, 256}},
		{name: "big last layer", layer: 512, last: 2 << 20, wantLayerSizes: []int64{512, 512, 2 << 20}, wantMinLastComp: 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := BuildImage(testHistory, env, tc.layer, tc.last)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(testHistory, cf.History); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(env, cf.Config.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
			}
			if len(cf.RootFS.DiffIDs) != len(tc.wantLayerSizes) {
				t.Errorf("%d diff ids, want %d", len(cf.RootFS.DiffIDs), len(tc.wantLayerSizes))
			}
			if diff := cmp.Diff(tc.wantLayerSizes, fileSizes(t, img)); diff != "" {
				t.Errorf("layer content sizes (-want +got):\n%s", diff)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			// Random bytes do not compress: the manifest's sizes, which
			// size budgets read, are at least the content's.
			if last := m.Layers[len(m.Layers)-1].Size; last < tc.wantMinLastComp {
				t.Errorf("last layer's compressed size %d, want at least %d", last, tc.wantMinLastComp)
			}
		})
	}
}

func TestPushToRegistryBehindBasicAuth(t *testing.T) {
	reg := StartRegistries("puller", "s3cret")
	defer reg.Close()
	ref := reg.Private + "/team/app:1"
	img, err := BuildImage(testHistory, nil, 128, 0)
	if err != nil {
		t.Fatal(err)
	}

	err = Push(ref, img)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("pushing without credentials: %v, want 401", err)
	}
	wrong := remote.WithAuth(&authn.Basic{Username: "puller", Password: "guess"})
	if err := Push(ref, img, wrong); err == nil {
		t.Fatal("pushing with a wrong password succeeded")
	}
	if err := Push(ref, img, reg.Auth()); err != nil {
		t.Fatal(err)
	}

	cf, _, err := pull(t, ref, reg.Auth())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testHistory, cf.History); diff != "" {
		t.Errorf("pulled history (-want +got):\n%s", diff)
	}
	if _, _, err := pull(t, ref); !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("pulling without credentials: %v, want 401", err)
	}
}

// Push uploads an index as well: what the registry serves under the tag
// is the index pushed.
func TestPushIndex(t *testing.T) {
	reg := StartRegistries("puller", "s3cret")
	defer reg.Close()
	img, err := ImageFromSteps(v1.Platform{OS: "linux", Architecture: "arm64"}, nil, 64, "COPY app /app")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := PlatformIndex(img)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Open + "/team/multi:1"
	if err := Push(ref, idx); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(r)
	if err != nil {
		t.Fatalf("pulling the index: %v", err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := got.Digest(); err != nil || d != want {
		t.Errorf("the registry serves index %v (%v), want %v", d, err, want)
	}
}

func TestImageFromConfig(t *testing.T) {
	cfg, err := ReadFixtureConfig("../../pkg/policy/testdata/images/nginx-1.17.0.json")
	if err != nil {
		t.Fatal(err)
	}
	before := cfg.DeepCopy()
	img, err := ImageFromConfig(cfg, 64)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, cfg); diff != "" {
		t.Errorf("cfg modified (-before +after):\n%s", diff)
	}
	got, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := before.DeepCopy()
	want.RootFS = got.RootFS
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config other than rootfs (-want +got):\n%s", diff)
	}
	n := layerCount(before.History)
	if n == 0 || len(got.RootFS.DiffIDs) != n {
		t.Errorf("%d diff ids for %d layers in the history", len(got.RootFS.DiffIDs), n)
	}
	if diff := cmp.Diff(slices.Repeat([]int64{64}, n), fileSizes(t, img)); diff != "" {
		t.Errorf("layer content sizes (-want +got):\n%s", diff)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if d, err := l.DiffID(); err != nil || i >= len(got.RootFS.DiffIDs) || d != got.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff id %v (%v) is not the config's", i, d, err)
		}
	}
	if _, err := ReadFixtureConfig("testdata/absent.json"); err == nil {
		t.Error("reading an absent fixture succeeded")
	}
}

func TestReadFixture(t *testing.T) {
	for _, c := range []struct {
		file      string
		wantSizes int
	}{
		{"golang-1.24.4-bookworm.json", 7},
		{"nginx-1.17.0.json", 0}, // records no sizes
	} {
		fx, err := ReadFixture("../../pkg/policy/testdata/images/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		if len(fx.Config.History) == 0 || fx.Config.OS != "linux" {
			t.Errorf("%s: config %+v", c.file, fx.Config)
		}
		if len(fx.LayerSizes) != c.wantSizes {
			t.Errorf("%s: %d layer sizes, want %d", c.file, len(fx.LayerSizes), c.wantSizes)
		}
		for i, s := range fx.LayerSizes {
			if s <= 0 {
				t.Errorf("%s: layer %d size %d", c.file, i, s)
			}
		}
	}
	if _, err := ReadFixture("testdata/absent.json"); err == nil {
		t.Error("reading an absent fixture succeeded")
	}
}

// pull reads ref's config and its layers' compressed sizes.
func pull(t *testing.T, ref string, opts ...remote.Option) (*v1.ConfigFile, []int64, error) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, nil, err
	}
	cf, cerr := img.ConfigFile()
	m, merr := img.Manifest()
	if err := errors.Join(cerr, merr); err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, l := range m.Layers {
		sizes = append(sizes, l.Size)
	}
	return cf, sizes, nil
}

func TestRegistriesPushApps(t *testing.T) {
	reg := StartRegistries("puller", "s3cret")
	defer reg.Close()
	if err := reg.PushApps(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref  string
		want ImageSpec
		opts []remote.Option
		// big: the last layer is BigLayer bytes, the others small.
		big bool
	}{
		{ref: reg.GoSDKApp(), want: GoSDKApp()},
		{ref: reg.StaticApp(), want: StaticApp()},
		{ref: reg.BigStaticApp(), want: StaticApp(), big: true},
		{ref: reg.PrivateGoSDKApp(), want: GoSDKApp(), opts: []remote.Option{reg.Auth()}},
	} {
		t.Run(c.ref, func(t *testing.T) {
			cf, sizes, err := pull(t, c.ref, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, ImageSpec{History: cf.History, Env: cf.Config.Env}); diff != "" {
				t.Errorf("image (-want +got):\n%s", diff)
			}
			last := sizes[len(sizes)-1]
			if got := last >= BigLayer; got != c.big {
				t.Errorf("last layer %d bytes compressed; want at least %d: %v", last, BigLayer, c.big)
			}
		})
	}
	if !bytes.Contains(reg.DockerConfigJSON(), []byte(`"`+reg.Private+`"`)) {
		t.Errorf("docker config %s does not name %s", reg.DockerConfigJSON(), reg.Private)
	}
}

// The fixtures say what the suites' assertions rely on: the Go SDK's
// evidence in one, none in the other.
func TestAppFixtures(t *testing.T) {
	text := func(s ImageSpec) string {
		var b strings.Builder
		for _, h := range s.History {
			b.WriteString(h.CreatedBy + "\n")
		}
		return b.String() + strings.Join(s.Env, "\n")
	}
	sdk, static := text(GoSDKApp()), text(StaticApp())
	for _, evidence := range []string{"GOLANG_VERSION=1.24.4", "go build -o /app", "/usr/local/go/bin"} {
		if !strings.Contains(sdk, evidence) {
			t.Errorf("GoSDKApp lacks %q", evidence)
		}
		if strings.Contains(static, evidence) {
			t.Errorf("StaticApp has %q", evidence)
		}
	}
	// Each call returns its own copy.
	a := GoSDKApp()
	a.History[0].CreatedBy = "changed"
	if GoSDKApp().History[0].CreatedBy == "changed" {
		t.Error("GoSDKApp shares its history between calls")
	}
}
