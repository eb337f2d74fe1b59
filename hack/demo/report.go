package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
)

// workload is one object the demo applies.
type workload struct {
	ns, name, kind string
	image          *built
}

// file is the manifest name the demo pretends the object came from.
func (w workload) file() string { return w.ns + "/" + w.name + ".yaml" }

// object builds the Pod or Deployment running the workload's image.
func (w workload) object() client.Object {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: w.image.ref}}}
	meta := metav1.ObjectMeta{Namespace: w.ns, Name: w.name}
	if w.kind == "Pod" {
		return &corev1.Pod{ObjectMeta: meta, Spec: spec}
	}
	labels := map[string]string{"app": w.name}
	return &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
	}}
}

// workloads pairs the sample images with namespaces: every image in the
// enforcing and the audited namespace, two bloated ones in the untouched.
func workloads(images []*built) []workload {
	byName := map[string]*built{}
	for _, b := range images {
		byName[b.name()] = b
	}
	type spec struct{ name, kind, image string }
	all := []spec{
		{"go-single", "Pod", "demo/go-api:single-stage"},
		{"go-multistage", "Pod", "demo/go-api:multi-stage"},
		{"orders-jdk", "Deployment", "demo/orders:maven"},
		{"orders-jre", "Deployment", "demo/orders:jre"},
		{"web-node", "Deployment", "demo/web:node-build"},
		{"web-nginx", "Deployment", "demo/web:nginx"},
	}
	var out []workload
	for _, ns := range []string{nsEnforce, nsAudit, nsUntouched} {
		for _, s := range all {
			if ns == nsUntouched && s.name != "go-single" && s.name != "web-node" {
				continue
			}
			if b := byName[s.image]; b != nil {
				out = append(out, workload{ns: ns, name: s.name, kind: s.kind, image: b})
			}
		}
	}
	return out
}

// result is what happened to one workload, and what the default policy
// finds in its image (pkg/policy on the same manifest and config).
type result struct {
	workload
	err      error
	warnings []string
	eval     policy.Result
}

// denied reports whether the API server refused the workload.
func (r result) denied() bool { return r.err != nil }

// apply creates each workload and records the API server's answer. Only
// an admission denial is an expected error.
func apply(ctx context.Context, c *cluster, ws []workload) ([]result, error) {
	def := policy.Default()
	var out []result
	for _, w := range ws {
		c.warnings.Take()
		err := c.client.Create(ctx, w.object())
		if err != nil && !apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("creating %s %s/%s: %w", w.kind, w.ns, w.name, err)
		}
		out = append(out, result{workload: w, err: err, warnings: c.warnings.Take(), eval: policy.Evaluate(&def.Spec, w.image.facts)})
	}
	return out, nil
}

// wantReason is the Event slimgate should record for a result, or "".
func (r result) wantReason() string {
	if r.eval.Verdict != policy.VerdictDeny {
		return ""
	}
	switch r.ns {
	case nsEnforce:
		return events.ReasonRejected
	case nsAudit:
		return events.ReasonAudited
	}
	return ""
}

// waitEvents lists the Events in the demo namespaces once every expected
// one has arrived, or after a timeout (check then reports what is missing).
func waitEvents(ctx context.Context, c *cluster, rs []result) ([]eventsv1.Event, error) {
	var evs []eventsv1.Event
	list := func() error {
		evs = nil
		for _, ns := range []string{nsEnforce, nsAudit, nsUntouched} {
			var l eventsv1.EventList
			if err := c.client.List(ctx, &l, client.InNamespace(ns)); err != nil {
				return fmt.Errorf("%w: listing events: %w", devcluster.ErrGiveUp, err)
			}
			evs = append(evs, l.Items...)
		}
		return nil
	}
	err := devcluster.Poll(ctx, 20*time.Second, func() error {
		if err := list(); err != nil {
			return err
		}
		for _, r := range rs {
			if want := r.wantReason(); want != "" && !slices.ContainsFunc(evs, func(e eventsv1.Event) bool { return about(e, r, want) }) {
				return fmt.Errorf("no %s Event for %s/%s yet", want, r.ns, r.name)
			}
		}
		return nil
	})
	if errors.Is(err, devcluster.ErrGiveUp) || ctx.Err() != nil {
		return nil, err
	}
	return evs, nil
}

// about reports whether e is an Event with this reason regarding r.
func about(e eventsv1.Event, r result, reason string) bool {
	return e.Reason == reason && e.Regarding.Namespace == r.ns && e.Regarding.Name == r.name && e.Regarding.Kind == r.kind
}

// check compares what happened with what slimgate should have done.
func check(rs []result, evs []eventsv1.Event) []string {
	var problems []string
	for _, r := range rs {
		id := fmt.Sprintf("%s %s/%s (%s)", r.kind, r.ns, r.name, r.image.name())
		if got := r.eval.Verdict == policy.VerdictDeny; got != r.image.bloated {
			problems = append(problems, fmt.Sprintf("%s: the default policy's verdict is %s", id, r.eval.Verdict))
		}
		wantDenied := r.ns == nsEnforce && r.eval.Verdict == policy.VerdictDeny
		switch {
		case wantDenied && !r.denied():
			problems = append(problems, id+": admitted, want refused")
		case !wantDenied && r.denied():
			problems = append(problems, fmt.Sprintf("%s: refused, want admitted: %v", id, r.err))
		case r.denied() && !strings.Contains(r.err.Error(), "evidence:"):
			problems = append(problems, id+": the rejection names no evidence")
		}
		want := r.wantReason()
		for _, e := range evs {
			if e.Regarding.Namespace == r.ns && e.Regarding.Name == r.name && e.Regarding.Kind == r.kind && e.Reason != want {
				problems = append(problems, fmt.Sprintf("%s: unexpected %s Event", id, e.Reason))
			}
		}
		if want != "" && !slices.ContainsFunc(evs, func(e eventsv1.Event) bool { return about(e, r, want) }) {
			problems = append(problems, fmt.Sprintf("%s: no %s Event", id, want))
		}
	}
	return problems
}

// count counts the results refused (denied true) or admitted.
func count(rs []result, denied bool) int {
	n := 0
	for _, r := range rs {
		if r.denied() == denied {
			n++
		}
	}
	return n
}

// rows returns the fields of the table rows about a demo namespace.
func rows(section string) [][]string {
	var out [][]string
	for _, l := range strings.Split(section, "\n") {
		if strings.HasPrefix(l, "demo-") {
			out = append(out, strings.Fields(l))
		}
	}
	return out
}

// section prints a heading.
func section(out io.Writer, title string) {
	fmt.Fprintf(out, "\n== %s\n", title)
}

// printImages lists the pushed sample images.
func printImages(out io.Writer, host string, images []*built) {
	fmt.Fprintf(out, "In-process registry (go-containerregistry pkg/registry) at %s, plain HTTP on loopback.\n", host)
	fmt.Fprintln(out, "Sample images: the real config of an official image with the app's build steps appended. Only configs and")
	fmt.Fprintln(out, "manifests are pushed: slimgate never reads layer blobs, and the manifests carry the layers' real sizes and digests.")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tFROM\tLAST BUILD STEP\tLAYERS\tSIZE")
	estimated := false
	for _, b := range images {
		size := policy.HumanBytes(b.facts.CompressedSize)
		if b.estimated {
			size += " *"
			estimated = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.name(), b.base, b.steps[len(b.steps)-1].createdBy, len(b.facts.Layers), size)
	}
	tw.Flush()
	if estimated {
		fmt.Fprintln(out, "* base layer sizes estimated: the recorded config of that base image came without its manifest.")
	}
}

// printSetup explains the namespaces and policies.
func printSetup(out io.Writer, host string) {
	section(out, "Policies and namespaces")
	fmt.Fprintln(out, "Two SlimImagePolicies, each the embedded default policy (pkg/policy/default-policy.yaml) with a mode and a selector:")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  POLICY\tMODE\tNAMESPACE SELECTOR")
	fmt.Fprintf(tw, "  cluster-audit\tAudit\t%s does not exist (every namespace that made no choice)\n", optLabel)
	fmt.Fprintf(tw, "  opt-in-enforce\tEnforce\t%s=true\n", optLabel)
	tw.Flush()
	fmt.Fprintf(out, "Demo-only setting in both: registries.insecure: [%s], since the demo registry speaks plain HTTP; the webhook\n", host)
	fmt.Fprintln(out, "exempts exactly that address from its private-network guard, so allowPrivateNetworks stays false.")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAMESPACE\tLABEL\tWHAT APPLIES")
	fmt.Fprintf(tw, "  %s\t%s=true\topt-in-enforce: bloated images are refused\n", nsEnforce, optLabel)
	fmt.Fprintf(tw, "  %s\t(none)\tcluster-audit: everything admitted, bloated images recorded as Events\n", nsAudit)
	fmt.Fprintf(tw, "  %s\t%s=false\tno policy: admitted, nothing recorded\n", nsUntouched, optLabel)
	tw.Flush()
	fmt.Fprintln(out, "No controller-manager runs: Deployments are judged when created, and make no Pods here.")
}

// printTable prints one row per workload.
func printTable(out io.Writer, rs []result) {
	fmt.Fprintln(out, "VERDICT is the API server's answer; RULE, SIZE and BLOAT are the default policy's findings on the image")
	fmt.Fprintln(out, "(BLOAT: the share of the compressed size in layers that installed or ran a toolchain).")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tIMAGE\tVERDICT\tRULE\tSIZE\tBLOAT")
	for _, r := range rs {
		verdict := "admitted"
		switch {
		case r.denied():
			verdict = "DENIED"
		case len(r.warnings) > 0:
			verdict = "admitted, warned"
		}
		rules := "-"
		if len(r.eval.Findings) > 0 {
			var ids []string
			for _, f := range r.eval.Findings {
				ids = append(ids, f.Rule)
			}
			rules = strings.Join(ids, ",")
		}
		size := policy.HumanBytes(r.eval.Size.Compressed)
		if r.image.estimated {
			size += " *"
		}
		bloat := "-"
		if b := r.eval.Bloat; b != nil && b.Known {
			bloat = fmt.Sprintf("%.0f%%", b.Percent)
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\n", r.ns, strings.ToLower(r.kind), r.name, r.image.name(), verdict, rules, size, bloat)
	}
	tw.Flush()
}

// printRejections prints each refusal and warning as `kubectl apply -f`
// shows it.
func printRejections(out io.Writer, rs []result) {
	for _, r := range rs {
		if !r.denied() && len(r.warnings) == 0 {
			continue
		}
		fmt.Fprintf(out, "$ kubectl apply -f %s\n", r.file())
		for _, w := range r.warnings {
			fmt.Fprintln(out, "Warning:", w)
		}
		if r.denied() {
			fmt.Fprintln(out, kubectlError(r.err, r.file()))
		}
		fmt.Fprintln(out)
	}
}

// kubectlError formats an API error as kubectl apply prints it: the source
// file is added to the status message, then "Error from server (Reason): ".
func kubectlError(err error, file string) string {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return "error: " + err.Error()
	}
	s := st.Status()
	msg := fmt.Sprintf("error when creating %q: %s", file, s.Message)
	if s.Reason == "" {
		return "Error from server: " + msg
	}
	return fmt.Sprintf("Error from server (%s): %s", s.Reason, msg)
}

// printEvents lists Events as `kubectl get events -A` does, oldest first.
// A note leads with the bloat attribution, then one headline per finding
// and an indented remedy line; the headlines are shown, one per line.
func printEvents(out io.Writer, evs []eventsv1.Event, now time.Time) {
	if len(evs) == 0 {
		fmt.Fprintln(out, "No resources found")
		return
	}
	fmt.Fprintln(out, "MESSAGE shows the lines of each note but its remedy (kubectl get events -o yaml prints it all). Notes keep")
	fmt.Fprintln(out, "the findings' headlines and one remedy, not the evidence lines above, to fit the Events API's 1024-byte limit.")
	seen := func(e eventsv1.Event) time.Time {
		switch {
		case e.Series != nil:
			return e.Series.LastObservedTime.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.DeprecatedLastTimestamp.Time
	}
	slices.SortStableFunc(evs, func(a, b eventsv1.Event) int { return seen(a).Compare(seen(b)) })
	tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tLAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for _, e := range evs {
		var lines []string
		for _, l := range strings.Split(e.Note, "\n") {
			if !strings.HasPrefix(l, " ") {
				lines = append(lines, l)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\n", e.Namespace, duration.HumanDuration(now.Sub(seen(e))), e.Type, e.Reason,
			strings.ToLower(e.Regarding.Kind), e.Regarding.Name, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t\t\t\t\t%s\n", l)
		}
	}
	tw.Flush()
}

// printPreviews prints each dry run as kubectl shows it: the warnings on
// stderr first, then the result.
func printPreviews(out io.Writer, p *previews) {
	fmt.Fprintln(out, "Before enforcing, ask: the webhook answers a namespace label change or a policy switched to Enforce with")
	fmt.Fprintln(out, "warnings naming the running workloads Enforce would deny, from the scan's results (no registry request).")
	fmt.Fprintln(out, "Both never deny, and --dry-run=server stores nothing.")
	for _, d := range []dryRun{p.label, p.enforce} {
		fmt.Fprintf(out, "\n$ %s\n", d.command)
		for _, w := range d.warnings {
			fmt.Fprintf(out, "Warning: %s\n", w)
		}
		fmt.Fprintln(out, d.printed)
	}
}

// checkPreviews: each dry run's warnings name exactly the workloads the
// default policy denies in the audited namespace, under a headline that
// counts them.
func checkPreviews(p *previews) []string {
	var problems []string
	for _, d := range []dryRun{p.label, p.enforce} {
		if got, want := named(d.warnings), sorted(d.want); !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("%s: the warnings name %q, want %q", d.command, got, want))
			continue
		}
		head := fmt.Sprintf("would deny %d running %s", len(d.want), plural(len(d.want), "workload"))
		if len(d.want) > 0 && (len(d.warnings) == 0 || !strings.Contains(d.warnings[0], head)) {
			problems = append(problems, fmt.Sprintf("%s: the first warning %q does not say %q", d.command, d.warnings, head))
		}
	}
	return problems
}

// printCLI prints the command, its output and its exit status as a shell
// would show them.
func printCLI(out io.Writer, r *cliRun) {
	fmt.Fprintln(out, "The same engine from a laptop, with the caller's kubeconfig and no install: every namespace but the system")
	fmt.Fprintln(out, "ones, judged under the built-in policy (Enforce everywhere), whatever the cluster's policies say.")
	fmt.Fprintln(out, "default-policy.yaml is the built-in policy with the demo registry's settings (plain HTTP on loopback).")
	fmt.Fprintf(out, "\n$ slimgate %s\n", strings.Join(r.args, " "))
	fmt.Fprint(out, r.stdout)
	fmt.Fprint(out, r.stderr)
	fmt.Fprintf(out, "$ echo $?\n%d\n", r.exit)
}

// exitViolation is slimgate scan's exit status when a workload is in
// violation.
const exitViolation = 1

// checkCLI: slimgate scan judges every admitted workload as the default
// policy does (fail exactly when it denies the image), names no workload
// the API server refused, and exits accordingly.
func checkCLI(rs []result, r *cliRun) []string {
	got := map[string]string{} // namespace/kind/name -> result
	for _, row := range rows(r.stdout) {
		if len(row) > 2 && strings.Contains(row[1], "/") {
			got[row[0]+"/"+row[1]] = row[2]
		}
	}
	var problems []string
	violations := 0
	for _, res := range rs {
		key := res.ns + "/" + res.kind + "/" + res.name
		if res.denied() {
			if _, ok := got[key]; ok {
				problems = append(problems, "slimgate scan: lists "+key+", which the API server refused")
			}
			continue
		}
		want := "pass"
		if res.eval.Verdict == policy.VerdictDeny {
			want = "fail"
			violations++
		}
		if got[key] != want {
			problems = append(problems, fmt.Sprintf("slimgate scan: %s is %q, want %q", key, got[key], want))
		}
	}
	wantExit := 0
	if violations > 0 {
		wantExit = exitViolation
	}
	if r.exit != wantExit {
		problems = append(problems, fmt.Sprintf("slimgate scan: exit status %d, want %d; stderr: %s", r.exit, wantExit, r.stderr))
	}
	return problems
}
