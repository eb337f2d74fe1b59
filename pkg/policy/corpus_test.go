package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/pkg/image"
)

// corpusDir holds real image configs the detectors were not built
// against (see its README); testdata/images is the development set.
var corpusDir = filepath.Join("testdata", "corpus")

// corpusEntry is one file of the corpus. Decoding is strict: a field not
// listed here is an error.
type corpusEntry struct {
	Ref          string `json:"ref"`
	RefTag       string `json:"ref_tag"`
	Provenance   string `json:"provenance"`
	Kind         string `json:"kind"`
	SourceFormat string `json:"source_format"`
	Ecosystem    string `json:"ecosystem"`
	Expected     string `json:"expected"`
	Confidence   string `json:"confidence"`
	Why          string `json:"why"`
	// Rules are the rule ids a correct engine reports for a reject:
	// today's ids, or proposed toolchain.<name> ids listed in the README.
	Rules []string `json:"rules"`
	// DecidingEvidence are verbatim pieces of the config that decide the
	// verdict: part of a history line, an env entry or a label key=value.
	DecidingEvidence []string        `json:"deciding_evidence"`
	ImageID          string          `json:"image_id"`
	Notes            []string        `json:"notes"`
	Config           json.RawMessage `json:"config"`
	LayerSizes       []int64         `json:"layer_sizes"`
}

// decodeStrict decodes one JSON document, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON document")
	}
	return nil
}

func corpusFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files in %s: %v", corpusDir, err)
	}
	return files
}

func readCorpusEntry(t testing.TB, file string) (corpusEntry, v1.ConfigFile) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var e corpusEntry
	if err := decodeStrict(data, &e); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var cfg v1.ConfigFile
	if err := decodeStrict(e.Config, &cfg); err != nil {
		t.Fatalf("%s: config: %v", file, err)
	}
	return e, cfg
}

var (
	// installCmd and removeCmd find a package install and a removal in
	// one history step: the mark of a runtime image that builds and
	// cleans up in the same RUN.
	installCmd = regexp.MustCompile(`\b(apt-get|apt) +(-[-\w=]+ +)*install\b|\bapk +(-[-\w=]+ +)*add\b|\b(yum|dnf|microdnf|tdnf) +(-[-\w=]+ +)*install\b|\bzypper +(-[-\w=]+ +)*(in|install)\b`)
	removeCmd  = regexp.MustCompile(`\b(apt-get|apt) +(-[-\w=]+ +)*(purge|remove)\b|\bapk +(-[-\w=]+ +)*del\b|\b(yum|dnf|microdnf|tdnf) +(-[-\w=]+ +)*(remove|erase)\b|\bzypper +(-[-\w=]+ +)*(rm|remove)\b`)
	// buildTool finds, in a step's text, a compiler or build tool being
	// installed or run: what makes an install-and-purge step a build.
	buildTool = regexp.MustCompile(`\b(gcc|g\+\+|clang|build-base|build-essential|alpine-sdk|PHPIZE_DEPS|dpkg-dev|build-dep|dpkg-buildpackage|make|cmake|ninja|configure|cargo|rustup-init)\b`)
	// proposedRule is the form of a rule id the catalog does not have yet.
	proposedRule = regexp.MustCompile(`^(toolchain|build)\.[a-z0-9][a-z0-9-]*$`)
)

// installsAndPurges reports whether one history step both installs and
// removes packages.
func installsAndPurges(cfg v1.ConfigFile) bool {
	return slices.ContainsFunc(cfg.History, func(h v1.History) bool {
		return installCmd.MatchString(h.CreatedBy) && removeCmd.MatchString(h.CreatedBy)
	})
}

// compilesAndPurges reports whether one history step installs packages,
// builds with a compiler or build tool, and removes packages again: the
// hard negative of issue 13, a runtime image that compiles and purges in
// the same step.
func compilesAndPurges(cfg v1.ConfigFile) bool {
	return slices.ContainsFunc(cfg.History, func(h v1.History) bool {
		return installCmd.MatchString(h.CreatedBy) && removeCmd.MatchString(h.CreatedBy) && buildTool.MatchString(h.CreatedBy)
	})
}

func TestCompilesAndPurges(t *testing.T) {
	cases := []struct {
		file  string
		index int
		want  bool
	}{
		{"corpus/spiped-1.6.4-alpine", 5, true},                     // gcc and make in .build-deps, apk del
		{"images/httpd-2.4.23", 11, true},                           // legacy apt-get purge of buildDeps
		{"corpus/postgres-17.11-trixie", 13, true},                  // apt-get build-dep on other architectures, purged
		{"corpus/sapmachine-21.0.12-jre-headless-ubuntu", 4, false}, // gnupg installed and purged: no build
		{"images/buildpack-deps-trixie", 3, false},                  // compilers installed, not removed
		{"corpus/welcome-to-docker-node18-alpine", 4, false},        // a node build, no package purge
	}
	for _, c := range cases {
		h := testdataConfig(t, c.file).History
		if c.index >= len(h) {
			t.Fatalf("%s has no history entry %d", c.file, c.index)
		}
		cfg := v1.ConfigFile{History: h[c.index : c.index+1]}
		if got := compilesAndPurges(cfg); got != c.want {
			t.Errorf("compilesAndPurges(%s #%d %.60q) = %v, want %v", c.file, c.index, h[c.index].CreatedBy, got, c.want)
		}
	}
}

// TestCorpusHardNegatives checks issue 13's quota over the whole corpus
// (the development set and this folder): at least a third of the images
// are runtime images that compile and purge in the same step.
func TestCorpusHardNegatives(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	var hard []string
	for _, file := range files {
		fx, _ := loadFixture(t, file)
		var cfg v1.ConfigFile
		if err := json.Unmarshal(fx.Config, &cfg); err != nil {
			t.Fatal(err)
		}
		if fx.Expected == "accept" && compilesAndPurges(cfg) {
			hard = append(hard, strings.TrimSuffix(filepath.Base(file), ".json"))
		}
	}
	t.Logf("%d of %d images are runtime images that compile and purge in one step", len(hard), len(files))
	if 3*len(hard) < len(files) {
		t.Errorf("%d of %d images compile and purge in one step, want at least a third", len(hard), len(files))
	}
}

func TestInstallsAndPurges(t *testing.T) {
	cases := []struct {
		line string
		want bool
	}{
		{"RUN /bin/sh -c apk add --no-cache --virtual .build-deps gcc make; make; apk del --no-network .build-deps", true},
		{"RUN /bin/sh -c apt-get install -y --no-install-recommends gcc; make; apt-get purge -y --auto-remove gcc", true},
		{"/bin/sh -c yum install -y gcc && make && yum remove -y gcc", true},
		{"RUN /bin/sh -c apt-get install -y gcc make && make", false},
		{"RUN /bin/sh -c apk add --no-cache tzdata", false},
		{"RUN /bin/sh -c apt-get purge -y --auto-remove", false},
	}
	for _, c := range cases {
		cfg := v1.ConfigFile{History: []v1.History{{CreatedBy: c.line}}}
		if got := installsAndPurges(cfg); got != c.want {
			t.Errorf("installsAndPurges(%q) = %v, want %v", c.line, got, c.want)
		}
	}
}

// TestCorpusWellFormed checks every corpus file against the README's
// schema and the corpus-wide quotas.
func TestCorpusWellFormed(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(corpusDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	catalogued := map[string]bool{}
	for _, id := range catalogIDs() {
		catalogued[id] = true
	}
	devRefs := map[string]bool{}
	for _, file := range fixtureFiles(t) {
		fx, _ := loadFixture(t, file)
		devRefs[fx.Ref] = true
	}

	refs := map[string]string{}
	var files, derived, accepts, hardNegatives int
	for _, file := range corpusFiles(t) {
		name := filepath.Base(file)
		e, cfg := readCorpusEntry(t, file)
		files++
		for field, v := range map[string]string{
			"ref": e.Ref, "provenance": e.Provenance, "ecosystem": e.Ecosystem, "why": e.Why,
		} {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: %s is empty", name, field)
			}
		}
		if prev, ok := refs[e.Ref]; ok {
			t.Errorf("%s: same ref as %s", name, prev)
		}
		refs[e.Ref] = name
		if devRefs[e.Ref] {
			t.Errorf("%s: the image is in the development set testdata/images", name)
		}
		switch e.Kind {
		case "real-config":
		case "derived-from-dockerfile":
			derived++
		default:
			t.Errorf("%s: kind %q", name, e.Kind)
		}
		if !slices.Contains([]string{"high", "medium", "low"}, e.Confidence) {
			t.Errorf("%s: confidence %q", name, e.Confidence)
		}
		switch e.Expected {
		case "reject":
			if len(e.Rules) == 0 {
				t.Errorf("%s: a reject names no rule", name)
			}
		case "accept":
			accepts++
			if len(e.Rules) != 0 {
				t.Errorf("%s: an accept names rules %v", name, e.Rules)
			}
			if installsAndPurges(cfg) {
				hardNegatives++
			}
		default:
			t.Errorf("%s: expected %q, want reject or accept", name, e.Expected)
		}
		for _, r := range e.Rules {
			switch {
			case catalogued[r]:
			case !proposedRule.MatchString(r):
				t.Errorf("%s: rule %q is neither in the catalog nor a proposed toolchain.<name>", name, r)
			case !bytes.Contains(readme, []byte("\n- `"+r+"`: ")):
				t.Errorf("%s: proposed rule %q is not described in the README's list of proposed ids", name, r)
			}
		}
		if !bytes.Contains(readme, []byte("| "+name+" |")) {
			t.Errorf("%s: no row in the README table", name)
		}

		_, f := loadFixture(t, file)
		if len(f.History) == 0 && len(f.Env) == 0 && len(f.Labels) == 0 {
			t.Errorf("%s: the config yields no history, env or labels to judge", name)
		}
		if len(e.LayerSizes) > 0 && len(f.History) > 0 && !f.HistoryMapped {
			t.Errorf("%s: %d layer sizes do not pair with the layer-adding history entries", name, len(e.LayerSizes))
		}
		if len(e.DecidingEvidence) == 0 {
			t.Errorf("%s: no deciding evidence", name)
		}
		for _, ev := range e.DecidingEvidence {
			if !evidenceIn(ev, cfg) {
				t.Errorf("%s: deciding evidence %q is not verbatim in the config", name, ev)
			}
		}
	}
	t.Logf("%d files: %d accept (%d install and purge in one step), %d reject; %d derived from a Dockerfile",
		files, accepts, hardNegatives, files-accepts, derived)
	if files < 95 {
		t.Errorf("%d corpus files, want at least 95", files)
	}
	if 4*derived >= files {
		t.Errorf("%d of %d files are derived from a Dockerfile, want under a quarter", derived, files)
	}
}

// evidenceIn reports whether ev is verbatim in a history line (its
// created_by or its comment), an env entry or a label written key=value.
func evidenceIn(ev string, cfg v1.ConfigFile) bool {
	if ev == "" {
		return false
	}
	for _, h := range cfg.History {
		if strings.Contains(h.CreatedBy, ev) || strings.Contains(h.Comment, ev) {
			return true
		}
	}
	for _, kv := range cfg.Config.Env {
		if strings.Contains(kv, ev) {
			return true
		}
	}
	for k, v := range cfg.Config.Labels {
		if strings.Contains(k+"="+v, ev) {
			return true
		}
	}
	return false
}

// TestCorpusScore measures today's engine on the corpus under the default
// policy. It reports misses without failing on them; it fails only when a
// file cannot be evaluated. Run it with
// SLIMGATE_CORPUS=1 go test -count=1 -run TestCorpusScore -v ./pkg/policy
func TestCorpusScore(t *testing.T) {
	if os.Getenv("SLIMGATE_CORPUS") == "" {
		t.Skip("a measurement: set SLIMGATE_CORPUS=1")
	}
	def := Default()
	var fat, denied, slim, allowed, ruleWant, ruleGot int
	var misses []string
	for _, file := range corpusFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		e, _ := readCorpusEntry(t, file)
		_, f := loadFixture(t, file)
		res := Evaluate(&def.Spec, f)
		got := []string{}
		for _, fd := range res.Findings {
			if !slices.Contains(got, fd.Rule) {
				got = append(got, fd.Rule)
			}
		}
		ok := false
		switch e.Expected {
		case "reject":
			fat++
			ok = res.Verdict == VerdictDeny
			if ok {
				denied++
			}
			for _, r := range e.Rules {
				ruleWant++
				if slices.Contains(got, r) {
					ruleGot++
				}
			}
		case "accept":
			slim++
			ok = res.Verdict == VerdictAllow
			if ok {
				allowed++
			}
		default:
			t.Fatalf("%s: expected %q", name, e.Expected)
		}
		mark := "ok  "
		if !ok {
			mark = "MISS"
			misses = append(misses, name)
		}
		t.Logf("%s %-44s expected %-6s %-40s got %-5s %s", mark, name, e.Expected,
			"["+strings.Join(e.Rules, " ")+"]", res.Verdict, "["+strings.Join(got, " ")+"]")
	}
	t.Logf("fat images denied %d/%d; slim images allowed %d/%d; expected rule ids reported %d/%d",
		denied, fat, allowed, slim, ruleGot, ruleWant)
	t.Logf("misses (%d): %s", len(misses), strings.Join(misses, ", "))
	t.Logf("FIGURE corpus: fat denied %d/%d, slim allowed %d/%d, expected rules %d/%d",
		denied, fat, allowed, slim, ruleGot, ruleWant)
}

// TestCorpus judges every corpus file under the default policy: a reject
// must be denied with every rule id the file expects, and no toolchain
// rule it does not expect (build steps, bloat and size may come on top);
// an accept must be allowed without findings.
func TestCorpus(t *testing.T) {
	def := Default()
	for _, file := range corpusFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			e, _ := readCorpusEntry(t, file)
			_, f := loadFixture(t, file)
			res := Evaluate(&def.Spec, f)
			var problems []string
			got := ruleIDs(res)
			switch e.Expected {
			case "reject":
				if res.Verdict != VerdictDeny {
					problems = append(problems, "allowed")
				}
				for _, r := range e.Rules {
					if !slices.Contains(got, r) {
						problems = append(problems, "no "+r)
					}
				}
				for _, r := range got {
					if strings.HasPrefix(r, "toolchain.") && !slices.Contains(e.Rules, r) {
						problems = append(problems, "unexpected "+r)
					}
				}
			case "accept":
				if res.Verdict != VerdictAllow || len(res.Findings) > 0 {
					problems = append(problems, "findings "+strings.Join(got, ", "))
				}
			}
			if len(problems) > 0 {
				t.Errorf("%s (expected %s %v): %s", strings.Join(problems, "; "), e.Expected, e.Rules, res.Summary())
				for _, fd := range res.Findings {
					t.Logf("%s: %s", fd.Rule, fd.Message)
				}
			}
		})
	}
}

// BenchmarkEvaluateCorpus evaluates every image of the development set and
// the corpus under the default policy, and reports the time per image.
func BenchmarkEvaluateCorpus(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no testdata: %v", err)
	}
	var facts []*image.Facts
	for _, file := range files {
		_, f := loadFixture(b, file)
		facts = append(facts, f)
	}
	c, err := Compile(&Default().Spec)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range facts {
			c.Evaluate(context.Background(), f)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(facts)), "ns/image")
}
