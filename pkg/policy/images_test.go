package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/pkg/image"
)

// fixture is a real image config from testdata/images (see its README).
type fixture struct {
	Ref      string          `json:"ref"`
	Expected string          `json:"expected"`
	Why      string          `json:"why"`
	Config   json.RawMessage `json:"config"`
	// LayerSizes are compressed sizes from the registry manifest; some
	// fixtures only know uncompressed sizes, used then as a stand-in.
	LayerSizes             []int64 `json:"layer_sizes"`
	LayerSizesUncompressed []int64 `json:"layer_sizes_uncompressed"`
}

// loadFixture builds image facts the way pkg/registry does, from a
// manifest (whose layers carry the fixture's sizes) and the config.
func loadFixture(t testing.TB, file string) (fixture, *image.Facts) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fx fixture
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(fx.Config, &cfg); err != nil {
		t.Fatalf("%s: config: %v", file, err)
	}
	sizes := fx.LayerSizes
	if sizes == nil {
		sizes = fx.LayerSizesUncompressed
	}
	if sizes == nil {
		// Sizes unknown: one empty-sized layer per diff id, or per
		// layer-adding history entry.
		n := len(cfg.RootFS.DiffIDs)
		if n == 0 {
			for _, h := range cfg.History {
				if !h.EmptyLayer {
					n++
				}
			}
		}
		sizes = make([]int64, n)
	}
	m := &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	for i, s := range sizes {
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType: types.OCILayer,
			Size:      s,
			Digest:    v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", i+1)},
		})
	}
	f, err := image.FromParts(m, &cfg)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	f.Reference = fx.Ref
	return fx, f
}

func fixtureFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "images", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return files
}

// TestRealImages judges every real image config under the default policy:
// every "reject" must be denied and no "accept" may be.
func TestRealImages(t *testing.T) {
	def := Default()
	var rejects, rejected, accepts, allowed int
	for _, file := range fixtureFiles(t) {
		fx, f := loadFixture(t, file)
		res := Evaluate(&def.Spec, f)
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Logf("%-40s expected %-6s got %s", name, fx.Expected, res.Summary())
		for _, fd := range res.Findings {
			t.Logf("    %s: %s", fd.Rule, fd.Message)
		}
		switch fx.Expected {
		case "reject":
			rejects++
			if res.Verdict == VerdictDeny {
				rejected++
			} else {
				t.Errorf("%s: want deny (%s), got allow; notes %q", name, fx.Why, res.Notes)
			}
		case "accept":
			accepts++
			if res.Verdict == VerdictAllow {
				allowed++
			} else {
				t.Errorf("%s: want allow (%s), got %s", name, fx.Why, res.Summary())
			}
		default:
			t.Fatalf("%s: unknown expectation %q", name, fx.Expected)
		}
		for _, fd := range res.Findings {
			if fd.Rule == "" || fd.Action == "" || fd.Message == "" || fd.Remedy == "" {
				t.Errorf("%s: incomplete finding %+v", name, fd)
			}
		}
	}
	t.Logf("reject files rejected: %d/%d; accept files allowed: %d/%d", rejected, rejects, allowed, accepts)
}

// TestRealImagesWhy checks that each reject is rejected for the reason
// the fixture gives, not by accident.
func TestRealImagesWhy(t *testing.T) {
	want := map[string][]string{
		"buildpack-deps-trixie":        {RuleToolchainCC},
		"composer-1.7.2-php7.2-alpine": {RuleToolchainComposer},
		"dotnet-sdk-10.0.400-noble":    {RuleToolchainDotnetSDK},
		"golang-1.24.4-bookworm":       {RuleToolchainGo, RuleToolchainCC},
		"maven-3-eclipse-temurin-26":   {RuleToolchainJDK, RuleToolchainMaven},
		"node-26.5.0":                  {RuleToolchainCC},
		"openjdk-18-oraclelinux8":      {RuleToolchainJDK},
		"python-3.14.7":                {RuleToolchainCC},
		"rust-1.98.0":                  {RuleToolchainRust, RuleToolchainCC},
	}
	def := Default()
	for name, rules := range want {
		_, f := loadFixture(t, filepath.Join("testdata", "images", name+".json"))
		res := Evaluate(&def.Spec, f)
		got := map[string]bool{}
		for _, fd := range res.Findings {
			got[fd.Rule] = true
		}
		for _, r := range rules {
			if !got[r] {
				t.Errorf("%s: no %s finding; got %s", name, r, res.Summary())
			}
		}
	}
}
