package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
)

// TestDemoShort runs the demo in short mode against a real kube-apiserver
// and etcd and reads its output as a person would.
func TestDemoShort(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd: not in -short mode (make test-unit)")
	}
	logf.SetLogger(logr.Discard())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out, opts{short: true, assets: os.Getenv("KUBEBUILDER_ASSETS")})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	sections := map[string]string{}
	for _, s := range strings.Split(out.String(), "\n== ")[1:] {
		title, body, _ := strings.Cut(s, "\n")
		sections[title] = body
	}

	verdicts := map[string]string{}
	for _, row := range rows(sections["Verdicts"]) {
		verdicts[row[0]+" "+row[1]] = row[3]
	}
	wantVerdicts := map[string]string{
		"demo-enforce pod/go-single":     "DENIED",
		"demo-enforce pod/go-multistage": "admitted",
		"demo-audit pod/go-single":       "admitted",
		"demo-audit pod/go-multistage":   "admitted",
		"demo-untouched pod/go-single":   "admitted",
	}
	if diff := cmp.Diff(wantVerdicts, verdicts); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}

	// The background scan's Report of the audited namespace fails the
	// single-stage Go image that got in under Audit.
	scan := sections["Background scan: policy status and Reports"]
	if !strings.Contains(scan, "slimgate-cluster-audit") || !strings.Contains(scan, "Pod/go-single") {
		t.Errorf("the scan section lacks the audited namespace's Report or its failing Pod:\n%s", scan)
	}

	rejections := sections["Rejections, as kubectl prints them"]
	for _, want := range []string{
		`Error from server (Forbidden): error when creating "demo-enforce/go-single.yaml": admission webhook "pods.slimgate.dev" denied the request: slimgate refused this request:`,
		`[opt-in-enforce] container "app" image `,
		"evidence: history #12: RUN /bin/sh -c go build -o /app . # buildkit",
		"env GOLANG_VERSION=1.24.4",
		"remedy: ",
	} {
		if !strings.Contains(rejections, want) {
			t.Errorf("rejections do not show %q", want)
		}
	}
	if strings.Contains(rejections, "go-multistage") {
		t.Error("the multi-stage image appears among the rejections")
	}

	var evs []string
	for _, row := range rows(sections["Events (kubectl get events -A, demo namespaces)"]) {
		evs = append(evs, strings.Join([]string{row[0], row[2], row[3], row[4]}, " "))
	}
	wantEvents := []string{
		"demo-enforce Warning ImageRejected pod/go-single",
		"demo-audit Warning ImageAudited pod/go-single",
	}
	if diff := cmp.Diff(wantEvents, evs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// The dry runs warn of the Pod that got in under Audit, as kubectl
	// prints them.
	preview := sections["Preview before enforcing (server-side dry run)"]
	for _, want := range []string{
		"$ kubectl label namespace demo-audit slimgate.dev/enabled=true --dry-run=server\n" +
			"Warning: slimgate: policy opt-in-enforce (Enforce) would deny 1 running workload in namespace demo-audit:\n" +
			"Warning:   Pod/go-single (toolchain.go, 230 MB)\n" +
			"namespace/demo-audit labeled (server dry run)\n",
		`$ kubectl patch sip cluster-audit --type merge -p '{"spec":{"mode":"Enforce"}}' --dry-run=server` + "\n" +
			"Warning: slimgate: Enforce would deny 1 running workload in 1 namespace:\n" +
			"Warning:   demo-audit/go-single (toolchain.go, 230 MB)\n" +
			"slimimagepolicy.slimgate.dev/cluster-audit patched (server dry run)\n",
	} {
		if !strings.Contains(preview, want) {
			t.Errorf("the preview section does not show\n%s\ngot:\n%s", want, preview)
		}
	}

	// slimgate scan, built from the repository, judges every admitted
	// Pod under the built-in policy.
	cli := sections["slimgate scan (the CLI, against this cluster)"]
	var scanned []string
	for _, row := range rows(cli) {
		if len(row) > 3 && strings.Contains(row[1], "/") {
			scanned = append(scanned, strings.Join(row[:4], " "))
		}
	}
	wantScanned := []string{
		"demo-audit Pod/go-multistage pass default",
		"demo-audit Pod/go-single fail default",
		"demo-enforce Pod/go-multistage pass default",
		"demo-untouched Pod/go-single fail default",
	}
	if diff := cmp.Diff(wantScanned, scanned); diff != "" {
		t.Errorf("slimgate scan rows (-want +got):\n%s", diff)
	}
	for _, want := range []string{"$ slimgate scan --kubeconfig demo.kubeconfig -A --policy default-policy.yaml\n",
		"\n2 of 4 workloads in violation, in 2 of 5 namespaces", "(policy default from default-policy.yaml)", "$ echo $?\n1\n"} {
		if !strings.Contains(cli, want) {
			t.Errorf("the slimgate scan section lacks %q:\n%s", want, cli)
		}
	}
	if !strings.Contains(sections["Summary"], "Every outcome was the expected one.") {
		t.Errorf("summary: %s", sections["Summary"])
	}
}

// TestCheck feeds check outcomes that differ from slimgate's rules: each
// must be reported.
func TestCheck(t *testing.T) {
	bloated := &built{sample: sample{repo: "demo/go-api", tag: "single-stage", bloated: true}}
	slim := &built{sample: sample{repo: "demo/go-api", tag: "multi-stage"}}
	deny := policy.Result{Verdict: policy.VerdictDeny}
	allow := policy.Result{Verdict: policy.VerdictAllow}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "go-single",
		errors.New("slimgate refused this request:\n[p] ...\n  evidence: history #12"))
	event := func(ns, reason string) eventsv1.Event {
		return eventsv1.Event{Reason: reason, Regarding: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "go-single"}}
	}
	pod := func(ns string, b *built) workload { return workload{ns: ns, name: "go-single", kind: "Pod", image: b} }
	for _, tc := range []struct {
		name    string
		results []result
		events  []eventsv1.Event
		want    int
	}{
		{"as expected", []result{
			{workload: pod(nsEnforce, bloated), err: forbidden, eval: deny},
			{workload: pod(nsAudit, bloated), eval: deny},
			{workload: pod(nsUntouched, bloated), eval: deny},
		}, []eventsv1.Event{event(nsEnforce, events.ReasonRejected), event(nsAudit, events.ReasonAudited)}, 0},
		{"bloated image admitted where enforced", []result{{workload: pod(nsEnforce, bloated), eval: deny}},
			[]eventsv1.Event{event(nsEnforce, events.ReasonRejected)}, 1},
		{"slim image refused", []result{{workload: pod(nsEnforce, slim), err: forbidden, eval: allow}}, nil, 1},
		{"policy disagrees with the sample", []result{{workload: pod(nsAudit, bloated), eval: allow}}, nil, 1},
		{"audit event missing", []result{{workload: pod(nsAudit, bloated), eval: deny}}, nil, 1},
		{"event in the untouched namespace", []result{{workload: pod(nsUntouched, bloated), eval: deny}},
			[]eventsv1.Event{event(nsUntouched, events.ReasonAudited)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := check(tc.results, tc.events)
			if len(got) != tc.want {
				t.Errorf("check found %d problems, want %d: %q", len(got), tc.want, got)
			}
		})
	}
}

// TestCheckPreviews feeds checkPreviews warnings that differ from what
// the scan found: each must be reported.
func TestCheckPreviews(t *testing.T) {
	head := "slimgate: policy p (Enforce) would deny 2 running workloads in namespace demo-audit:"
	for _, tc := range []struct {
		name     string
		warnings []string
		want     int
	}{
		{"as expected", []string{head, "  Pod/a (toolchain.go, 1 MB)", "  Deployment/b (build.go)"}, 0},
		{"one missing", []string{head, "  Pod/a (toolchain.go, 1 MB)"}, 1},
		{"one too many", []string{head, "  Pod/a (toolchain.go, 1 MB)", "  Deployment/b (build.go)", "  Pod/c (toolchain.go)"}, 1},
		{"wrong count", []string{"slimgate: would deny 3 running workloads", "  Pod/a (toolchain.go, 1 MB)", "  Deployment/b (build.go)"}, 1},
		{"no warnings", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dryRun{command: "kubectl label", warnings: tc.warnings, want: []string{"Pod/a", "Deployment/b"}}
			nothing := dryRun{command: "kubectl patch"}
			got := checkPreviews(&previews{label: d, enforce: nothing})
			if len(got) != tc.want {
				t.Errorf("checkPreviews found %d problems, want %d: %q", len(got), tc.want, got)
			}
		})
	}
}

// TestCheckCLI feeds checkCLI scan outputs that differ from slimgate's
// rules: each must be reported.
func TestCheckCLI(t *testing.T) {
	bloated := &built{sample: sample{repo: "demo/go-api", tag: "single-stage", bloated: true}}
	slim := &built{sample: sample{repo: "demo/go-api", tag: "multi-stage"}}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "go-single", errors.New("refused"))
	results := []result{
		{workload: workload{ns: nsEnforce, name: "go-single", kind: "Pod", image: bloated}, err: forbidden, eval: policy.Result{Verdict: policy.VerdictDeny}},
		{workload: workload{ns: nsAudit, name: "go-single", kind: "Pod", image: bloated}, eval: policy.Result{Verdict: policy.VerdictDeny}},
		{workload: workload{ns: nsAudit, name: "go-multistage", kind: "Pod", image: slim}, eval: policy.Result{Verdict: policy.VerdictAllow}},
	}
	const header = "NAMESPACE  WORKLOAD  RESULT  POLICY\n"
	for _, tc := range []struct {
		name, stdout string
		exit, want   int
	}{
		{"as expected", header + "demo-audit  Pod/go-multistage  pass  default\ndemo-audit  Pod/go-single  fail  default\n", 1, 0},
		{"a bloated image passes", header + "demo-audit  Pod/go-multistage  pass  default\ndemo-audit  Pod/go-single  pass  default\n", 1, 1},
		{"a workload missing", header + "demo-audit  Pod/go-single  fail  default\n", 1, 1},
		{"a refused workload listed", header + "demo-audit  Pod/go-multistage  pass  default\ndemo-audit  Pod/go-single  fail  default\ndemo-enforce  Pod/go-single  fail  default\n", 1, 1},
		{"exit status 0 with a violation", header + "demo-audit  Pod/go-multistage  pass  default\ndemo-audit  Pod/go-single  fail  default\n", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkCLI(results, &cliRun{stdout: tc.stdout, exit: tc.exit})
			if len(got) != tc.want {
				t.Errorf("checkCLI found %d problems, want %d: %q", len(got), tc.want, got)
			}
		})
	}
}

func TestKubectlError(t *testing.T) {
	err := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("boom"))
	err.ErrStatus.Message = `admission webhook "pods.slimgate.dev" denied the request: no`
	got := kubectlError(err, "ns/x.yaml")
	want := `Error from server (Forbidden): error when creating "ns/x.yaml": admission webhook "pods.slimgate.dev" denied the request: no`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestSamples builds every sample from its fixture: the base layers keep
// the real sizes, the app's steps are appended, and the default policy
// refuses exactly the bloated ones.
func TestSamples(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	def := policy.Default()
	for _, s := range samples() {
		t.Run(s.name(), func(t *testing.T) {
			b, err := build(root, "registry.test", s)
			if err != nil {
				t.Fatal(err)
			}
			var app int64
			for _, st := range s.steps {
				app += st.size
			}
			if last := b.facts.Layers[len(b.facts.Layers)-1]; last.Size != s.steps[len(s.steps)-1].size {
				t.Errorf("last layer is %d bytes, want the last step's %d", last.Size, s.steps[len(s.steps)-1].size)
			}
			if b.facts.CompressedSize <= app {
				t.Errorf("size %d does not include the base layers (app layers %d)", b.facts.CompressedSize, app)
			}
			res := policy.Evaluate(&def.Spec, b.facts)
			if got := res.Verdict == policy.VerdictDeny; got != s.bloated {
				t.Errorf("default policy: %s, want bloated=%v", res.Summary(), s.bloated)
			}
		})
	}
}
