package devcluster

import (
	"archive/tar"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
	srv := httptest.NewServer(BasicAuth(NewRegistry(), "puller", "s3cret", "test"))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/app:1"
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
	right := remote.WithAuth(&authn.Basic{Username: "puller", Password: "s3cret"})
	if err := Push(ref, img, right); err != nil {
		t.Fatal(err)
	}

	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, right)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testHistory, cf.History); diff != "" {
		t.Errorf("pulled history (-want +got):\n%s", diff)
	}
	if _, err := remote.Image(r); err == nil {
		t.Error("pulling without credentials succeeded")
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
	if _, err := ReadFixtureConfig("testdata/absent.json"); err == nil {
		t.Error("reading an absent fixture succeeded")
	}
}
