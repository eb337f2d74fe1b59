package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/internal/devcluster"
	admit "slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
	"slimgate.dev/slimgate/pkg/registry/local"
)

// localInspector gives the webhook the images the CLI checks: a Pod's
// short reference stands for a local image, or for a registry reference
// read as the CLI reads it.
type localInspector map[string]string

func (l localInspector) Inspect(ctx context.Context, r registry.Request) (*registry.Inspection, error) {
	ref := l[r.Reference]
	if local.IsLocal(ref) {
		return local.Inspect(ref, r.Platforms)
	}
	remote, err := registry.NewRemote(registry.Options{})
	if err != nil {
		return nil, err
	}
	defer remote.Close()
	host, _, _ := strings.Cut(ref, "/") // a plain HTTP test registry
	return remote.Inspect(ctx, registry.Request{Reference: ref, Platforms: r.Platforms, Egress: registry.EgressRules{Insecure: []string{host}}})
}

// said is one thing slimgate said about an image: where, the words, and
// the reference its reader knows the image by.
type said struct{ where, words, ref string }

// webhookSays sends a Pod running image through the admission handler
// under the policy and collects the denial, the warnings, the Event notes
// and the log lines that name a failure.
func webhookSays(t *testing.T, doc, image string, inspector localInspector) []said {
	t.Helper()
	p, err := policy.Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := devcluster.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(s).WithObjects(p, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}).Build()
	rec := &eventNotes{}
	h, err := admit.NewHandler(admit.Options{Reader: reader, Inspector: inspector, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	obj, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	ctx := logf.IntoContext(context.Background(), funcr.New(func(_, args string) { logs = append(logs, args) }, funcr.Options{Verbosity: 9}))
	resp := h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid", Operation: admissionv1.Create, Namespace: "team",
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Object: runtime.RawExtension{Raw: obj},
	}})
	mode := string(p.Spec.Mode)
	var out []said
	if !resp.Allowed {
		out = append(out, said{mode + " denial", resp.Result.Message, image})
	}
	for _, w := range resp.Warnings {
		out = append(out, said{mode + " warning", w, image})
	}
	for _, n := range rec.notes {
		out = append(out, said{mode + " Event", n.Reason + " " + n.Note, image})
	}
	for _, l := range logs {
		if strings.Contains(l, "not inspected") {
			out = append(out, said{mode + " log", l, image})
		}
	}
	return out
}

// eventNotes keeps the notes of the Events the decisions record.
type eventNotes struct{ notes []events.ImageNote }

func (e *eventNotes) Record(_ context.Context, d events.Decision) {
	e.notes = append(e.notes, d.Notes()...)
}

// cliSays runs slimgate check on ref under the policy, with flags, as
// text and as JSON; the JSON speaks through its findings' messages and its
// error.
func cliSays(t *testing.T, doc, ref string, flags ...string) ([]said, report) {
	t.Helper()
	file := writePolicy(t, doc)
	_, text, stderr := runCLI(t, slices.Concat([]string{"check", "--policy", file}, flags, []string{ref})...)
	_, js, _ := runCLI(t, slices.Concat([]string{"check", "--policy", file, "--output", "json"}, flags, []string{ref})...)
	r := decode(t, js)
	var fields []string
	for _, im := range r.Images {
		for _, f := range im.Findings {
			fields = append(fields, f.Message)
		}
		fields = append(fields, im.Error)
	}
	out := []said{{"check text", text, ref}, {"check JSON", strings.Join(fields, "\n"), ref}}
	if stderr != "" {
		out = append(out, said{"check stderr", stderr, ref})
	}
	if m := byteUnits.FindString(js); m != "" {
		t.Errorf("check JSON writes a size as %q, a second unit:\n%s", m, js)
	}
	return out, r
}

// byteUnits finds sizes written in IEC units or as an exact count beside a
// rounded figure: slimgate writes sizes in one unit (SI, as registries
// and docker do).
var byteUnits = regexp.MustCompile(`\d (KiB|MiB|GiB|TiB)\b|\(\d+ bytes\)`)

// speaksWithOneVoice checks that every surface in wants says something,
// that each says each phrase exactly once and writes sizes in one unit,
// and with refOnce that each names the image at most once.
func speaksWithOneVoice(t *testing.T, says []said, wants []string, refOnce bool, phrases ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range says {
		seen[s.where] = true
		for _, p := range phrases {
			if n := strings.Count(s.words, p); n != 1 {
				t.Errorf("%s says %q %d times, want once:\n%s", s.where, p, n, s.words)
			}
		}
		if n := strings.Count(s.words, s.ref); refOnce && n > 1 {
			t.Errorf("%s names %s %d times, want once at most:\n%s", s.where, s.ref, n, s.words)
		}
		if m := byteUnits.FindString(s.words); m != "" {
			t.Errorf("%s writes a size as %q, a second unit:\n%s", s.where, m, s.words)
		}
	}
	for _, w := range wants {
		if !seen[w] {
			t.Errorf("nothing said in %s", w)
		}
	}
	if t.Failed() {
		for _, s := range says {
			t.Logf("--- %s\n%s", s.where, s.words)
		}
	}
}

// TestOneVoice renders one finding and one inspection failure through
// every surface, slimgate check (stderr, text, JSON) and the webhook
// (denial, warning, Event note, log line): each says the same words, once,
// with sizes in one unit; a failure names the image and its reason once.
func TestOneVoice(t *testing.T) {
	t.Chdir(t.TempDir()) // the failing image is a relative path that does not exist
	dir := writeLayout(t, map[string]v1.Image{"sdk": buildImage(t, goSDKEnv, goSDKSteps...)})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer failing.Close()
	host := strings.TrimPrefix(failing.URL, "http://")
	images := localInspector{"s:1": "oci:" + dir + ":sdk", "x:1": "docker-archive:gone.tar", "u:1": host + "/a:1"}
	spec := func(mode, onError string) string {
		return policyHeader + "spec:\n  mode: " + mode + "\n  onInspectionError: " + onError + "\n  toolchains:\n    deny: [toolchain.go]\n"
	}

	t.Run("finding", func(t *testing.T) {
		says, r := cliSays(t, spec("Enforce", "Deny"), images["s:1"])
		if len(r.Images) != 1 || len(r.Images[0].Findings) != 1 {
			t.Fatalf("want one finding, got %+v", r.Images)
		}
		message := r.Images[0].Findings[0].Message
		evidence := ""
		for _, l := range strings.Split(says[0].words, "\n") {
			if e, ok := strings.CutPrefix(strings.TrimSpace(l), "evidence: "); ok {
				evidence = e
			}
		}
		if evidence == "" || !strings.Contains(message, " kB layer") {
			t.Fatalf("finding %q with evidence %q: want a layer size and an evidence line\n%s", message, evidence, says[0].words)
		}
		for _, mode := range []string{"Enforce", "Warn", "Audit"} {
			says = append(says, webhookSays(t, spec(mode, "Deny"), "s:1", images)...)
		}
		speaksWithOneVoice(t, says, []string{"check text", "check JSON", "Enforce denial", "Enforce Event", "Warn warning", "Warn Event", "Audit Event"}, false, message)
		denial := says[slices.IndexFunc(says, func(s said) bool { return s.where == "Enforce denial" })].words
		if want := "  evidence: " + evidence + "\n"; !strings.Contains(denial, want) {
			t.Errorf("the denial does not show the evidence as slimgate check does (%q):\n%s", want, denial)
		}
	})

	// A registry that fails: a note with onInspectionError Allow, a finding
	// with Deny. (Its detail is too long for a warning, which the invalid
	// image below shows.)
	t.Run("failure", func(t *testing.T) {
		allowed, ra := cliSays(t, spec("Enforce", "Allow"), images["u:1"], "--insecure-registry", host)
		denied, rd := cliSays(t, spec("Enforce", "Deny"), images["u:1"], "--insecure-registry", host)
		if len(ra.Images) != 1 || len(rd.Images) != 1 || len(rd.Images[0].Findings) != 1 {
			t.Fatalf("want one entry each; allowed %+v, denied %+v", ra.Images, rd.Images)
		}
		failure := ra.Images[0].Error
		if !strings.HasPrefix(failure, "not inspected (RegistryUnavailable): ") {
			t.Errorf("the failure reads %q, want it to start: not inspected (RegistryUnavailable): ", failure)
		}
		if reason := rd.Images[0].Findings[0].Evidence["reason"]; reason != "RegistryUnavailable" {
			t.Errorf("evidence reason %q, want RegistryUnavailable", reason)
		}
		says := slices.Concat(allowed, denied,
			webhookSays(t, spec("Enforce", "Deny"), "u:1", images),
			webhookSays(t, spec("Audit", "Allow"), "u:1", images))
		speaksWithOneVoice(t, says, []string{"check text", "check JSON", "check stderr", "Enforce denial", "Enforce Event", "Enforce log",
			"Audit Event", "Audit log"}, true, failure, "RegistryUnavailable")
	})

	// An image that is not there is the reference's fault: a finding
	// whatever onInspectionError says, in the same words as a failure.
	t.Run("invalid", func(t *testing.T) {
		says, r := cliSays(t, spec("Enforce", "Allow"), images["x:1"])
		if len(r.Images) != 1 || len(r.Images[0].Findings) != 1 || r.Images[0].Error != "" {
			t.Fatalf("want one finding and no error, got %+v", r.Images)
		}
		fd := r.Images[0].Findings[0]
		_, failure, _ := strings.Cut(fd.Message, ", ")
		if fd.Rule != "inspection.invalid" || fd.Evidence["reason"] != "NotFound" || !strings.HasPrefix(failure, "not inspected (NotFound): ") {
			t.Errorf("finding %s %q (evidence %v), want inspection.invalid saying: not inspected (NotFound): ...", fd.Rule, fd.Message, fd.Evidence)
		}
		says = slices.Concat(says,
			webhookSays(t, spec("Enforce", "Allow"), "x:1", images),
			webhookSays(t, spec("Warn", "Allow"), "x:1", images),
			webhookSays(t, spec("Audit", "Allow"), "x:1", images))
		speaksWithOneVoice(t, says, []string{"check text", "check JSON", "check stderr", "Enforce denial", "Enforce Event", "Enforce log",
			"Warn warning", "Warn Event", "Audit Event", "Audit log"}, true, failure, "NotFound")
	})
}
