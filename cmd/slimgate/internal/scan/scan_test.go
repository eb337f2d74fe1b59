package scan

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// rows returns the lines of out with their runs of blanks made one, the
// registry hosts named open and private.
func rows(out string) []string {
	var lines []string
	for line := range strings.Lines(out) {
		line = strings.Join(strings.Fields(line), " ")
		line = strings.NewReplacer(fx.regs.Open, "open", fx.regs.Private, "private").Replace(line)
		lines = append(lines, line)
	}
	return lines
}

// byteFigure is a size as the table prints it ("2.1 kB", "716 B").
var byteFigure = regexp.MustCompile(`\b\d+(\.\d+)? [kMG]?B\b`)

// hasRow reports whether a row starts with prefix, sizes aside: the test
// images' layers hold their registry's address, whose port changes the
// sizes by a few bytes from run to run (TestScanJSON checks the bloat).
func hasRow(lines []string, prefix string) bool {
	prefix = byteFigure.ReplaceAllString(prefix, "SIZE")
	return slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(byteFigure.ReplaceAllString(l, "SIZE"), prefix)
	})
}

func TestScanTable(t *testing.T) {
	needCluster(t)
	code, out, errOut := runScan(t, "--kubeconfig", fx.admin, "-A", "--policy", fx.policy)
	if code != ExitViolation {
		t.Fatalf("exit %d, want %d (workloads in violation); stderr:\n%s\nstdout:\n%s", code, ExitViolation, errOut, out)
	}
	lines := rows(out)
	for _, want := range []string{
		// One row per image: the running digest where a Pod reports one.
		"blog CronJob/nightly fail budget spec 2.1 kB open/golang-app:1 toolchain.go: Go toolchain",
		"blog Pod/front fail budget running 2.1 kB open/golang-app@" + fx.fatDigest + " toolchain.go: Go toolchain",
		"private Deployment/team fail budget spec 2.1 kB private/team/golang-app:1 toolchain.go:",
		"quiet Deployment/static pass budget spec - open/slim-app:1 -",
		"shop Deployment/api fail budget spec 2.1 kB open/golang-app:1 toolchain.go:",
		"shop Deployment/web pass budget spec - open/slim-app:1 -",
		"shop StatefulSet/db fail budget spec - open/big-app:1 size.compressed: Image over size budget",
		// One row per namespace.
		"blog budget pull secrets 2 2 4.2 kB",
		"broken - pull secrets - - -",
		"empty budget pull secrets 0 0 -",
		"private budget pull secrets 1 1 2.1 kB",
		"quiet budget pull secrets 1 0 -",
		"shop budget pull secrets 3 2 2.1 kB",
		"5 of 7 workloads in violation, in 3 of 7 namespaces, 8.4 kB of toolchains (policy budget from " + fx.policy + ")",
		"no policy selects broken, default: nothing judged there",
		"not scanned: kube-node-lease, kube-public, kube-system",
	} {
		if !hasRow(lines, want) {
			t.Errorf("no row starts with %q; got:\n%s", want, out)
		}
	}
	if hasRow(lines, "broken Pod/lost") || hasRow(lines, "kube-system") {
		t.Errorf("judged a namespace no policy selects, or a system namespace:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr is not a terminal, yet it got %q", errOut)
	}
}

// jsonReport is the part of the JSON output the tests compare.
type jsonReport struct {
	PolicySource string `json:"policySource"`
	Namespaces   []struct {
		Namespace   string   `json:"namespace"`
		Policies    []string `json:"policies"`
		Credentials string   `json:"credentials"`
		Workloads   int      `json:"workloads"`
		InViolation int      `json:"inViolation"`
	} `json:"namespaces"`
	Workloads []struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Result    string `json:"result"`
		Images    []struct {
			Image   string   `json:"image"`
			From    string   `json:"from"`
			Policy  string   `json:"policy"`
			Result  string   `json:"result"`
			Rules   []string `json:"rules"`
			Message string   `json:"message"`
		} `json:"images"`
	} `json:"workloads"`
	Skipped []string `json:"skippedNamespaces"`
	Totals  totals   `json:"totals"`
}

// scanJSON runs the command with --output json, checks its exit status
// and parses its output.
func scanJSON(t *testing.T, wantCode int, args ...string) jsonReport {
	t.Helper()
	code, out, errOut := runScan(t, append(args, "--output", "json")...)
	if code != wantCode {
		t.Fatalf("exit %d, want %d; stderr:\n%s\nstdout:\n%s", code, wantCode, errOut, out)
	}
	var r jsonReport
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("the output is not one JSON object: %v\n%s", err, out)
	}
	return r
}

// verdicts lists "namespace Kind/name result image-results" per workload.
func verdicts(r jsonReport) []string {
	var out []string
	for _, w := range r.Workloads {
		v := w.Namespace + " " + w.Kind + "/" + w.Name + " " + w.Result
		for _, img := range w.Images {
			v += " " + img.From + ":" + img.Result + ":" + strings.Join(img.Rules, ",")
		}
		out = append(out, v)
	}
	return out
}

// TestScanJSON scans as a user who may read workloads but not secrets:
// every namespace is pulled anonymously, so the private registry's image
// is not inspected (exit 2), and the output says so.
func TestScanJSON(t *testing.T) {
	needCluster(t)
	r := scanJSON(t, ExitError, "--kubeconfig", fx.reader, "-A", "--policy", fx.policy) // an image not inspected
	want := []string{
		"blog CronJob/nightly fail spec:fail:toolchain.go,toolchain.cc,build.go",
		"blog Pod/front fail running:fail:toolchain.go,toolchain.cc,build.go",
		"private Deployment/team error spec:error:inspection.failed",
		"quiet Deployment/static pass spec:pass:",
		"shop Deployment/api fail spec:fail:toolchain.go,toolchain.cc,build.go",
		"shop Deployment/web pass spec:pass:",
		"shop StatefulSet/db fail spec:fail:size.compressed",
	}
	if diff := cmp.Diff(want, verdicts(r)); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	var namespaces []string
	for _, ns := range r.Namespaces {
		namespaces = append(namespaces, ns.Namespace+" "+ns.Credentials+" "+strings.Join(ns.Policies, ","))
	}
	wantNS := []string{"blog anonymous budget", "broken anonymous ", "default anonymous ", "empty anonymous budget", "private anonymous budget",
		"quiet anonymous budget", "shop anonymous budget"}
	if diff := cmp.Diff(wantNS, namespaces); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	wantTotals := totals{Namespaces: 7, NamespacesAffected: 2, Workloads: 7, InViolation: 4, Errors: 1, BloatBytes: r.Totals.BloatBytes}
	if diff := cmp.Diff(wantTotals, r.Totals); diff != "" || r.Totals.BloatBytes <= 0 {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"kube-node-lease", "kube-public", "kube-system"}, r.Skipped); diff != "" {
		t.Errorf("skipped namespaces (-want +got):\n%s", diff)
	}
	if msg := r.Workloads[2].Images[0].Message; !strings.Contains(msg, "Unauthorized") {
		t.Errorf("the private image's message is %q, want it to say Unauthorized", msg)
	}
}

func TestScanExitStatus(t *testing.T) {
	needCluster(t)
	cases := []struct {
		name string
		args []string
		code int
		// stderr is a substring of the error, when code is ExitError.
		stderr string
	}{
		{"nothing in violation", []string{"-n", "quiet", "--policy", fx.policy}, ExitClean, ""},
		{"violations", []string{"-n", "shop", "--policy", fx.policy}, ExitViolation, ""},
		{"context namespace, no policy selects it", []string{"--policy", fx.policy}, ExitClean, ""},
		{"image not inspected", []string{"-n", "broken", "--policy", fx.openPolicy}, ExitError, ""},
		{"built-in policy: the egress guard refuses loopback, a violation", []string{"-n", "quiet"}, ExitViolation, ""},
		{"unknown namespace", []string{"-n", "nowhere", "--policy", fx.policy}, ExitError, "reading namespace nowhere"},
		{"unknown context", []string{"--context", "nowhere"}, ExitError, "reading the kubeconfig"},
		{"both policies", []string{"--policy", fx.policy, "--cluster-policies"}, ExitError, "exclude each other"},
		{"-n and -A", []string{"-n", "shop", "-A"}, ExitError, "exclude each other"},
		{"bad output", []string{"--output", "yaml"}, ExitError, "want table or json"},
		{"no cluster policy", []string{"-A", "--cluster-policies"}, ExitError, "the cluster has no SlimImagePolicy"},
		{"missing policy file", []string{"--policy", fx.policy + ".missing"}, ExitError, "--policy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runScan(t, append([]string{"--kubeconfig", fx.admin}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s\nstdout:\n%s", code, c.code, errOut, out)
			}
			if !strings.Contains(errOut, c.stderr) {
				t.Errorf("stderr %q does not say %q", errOut, c.stderr)
			}
		})
	}
}

// TestScanClusterPolicies judges under the cluster's policies: one that
// selects only shop.
func TestScanClusterPolicies(t *testing.T) {
	needCluster(t)
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop-only"}, Spec: v1alpha1.SlimImagePolicySpec{
		Mode:              v1alpha1.ModeAudit,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}},
		Registries:        v1alpha1.RegistryRules{AllowPrivateNetworks: true, Insecure: []string{fx.regs.Open}},
	}}
	if err := fx.kube.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fx.kube.Delete(t.Context(), p) })
	r := scanJSON(t, ExitViolation, "--kubeconfig", fx.admin, "-A", "--cluster-policies")
	want := []string{
		"shop Deployment/api fail spec:fail:toolchain.go,toolchain.cc,build.go",
		"shop Deployment/web pass spec:pass:",
		"shop StatefulSet/db pass spec:pass:", // the default budget (300Mi) admits it
	}
	if diff := cmp.Diff(want, verdicts(r)); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	if r.PolicySource != "cluster" || r.Workloads[0].Images[0].Policy != "shop-only" {
		t.Errorf("policy source %q, policy %q: want cluster, shop-only", r.PolicySource, r.Workloads[0].Images[0].Policy)
	}
}

// TestScanHonoursExceptions: a SlimImageException of shop waives the Go
// SDK image of Deployment api as a review would: its result is skip,
// naming the exception; StatefulSet db, which it does not name, still
// fails.
func TestScanHonoursExceptions(t *testing.T) {
	needCluster(t)
	e := &v1alpha1.SlimImageException{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-builds"},
		Spec: v1alpha1.SlimImageExceptionSpec{Policies: []string{"*"}, Rules: []string{"*"}, Images: []string{fx.regs.GoSDKApp()},
			Workloads: []v1alpha1.ExceptionWorkload{{Kind: "Deployment", Name: "api"}},
			Reason:    "the api image is slimmed next sprint", Expires: metav1.NewTime(time.Now().Add(24 * time.Hour))}}
	if err := fx.kube.Create(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fx.kube.Delete(context.Background(), e) })
	r := scanJSON(t, ExitViolation, "--kubeconfig", fx.admin, "-n", "shop", "--policy", fx.policy)
	want := []string{
		"shop Deployment/api skip spec:skip:toolchain.go,toolchain.cc,build.go",
		"shop Deployment/web pass spec:pass:",
		"shop StatefulSet/db fail spec:fail:size.compressed",
	}
	if diff := cmp.Diff(want, verdicts(r)); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	if msg := r.Workloads[0].Images[0].Message; !strings.Contains(msg, "SlimImageException api-builds until ") {
		t.Errorf("the excepted image's message %q does not name the exception", msg)
	}
}
