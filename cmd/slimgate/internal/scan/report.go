package scan

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/policy"
)

// report is what a scan found, as printed; its JSON form is the output of
// --output json.
type report struct {
	// Policies name the policies judged under; PolicySource says where
	// they come from: "built-in", the --policy file, or "cluster".
	Policies     []string `json:"policies"`
	PolicySource string   `json:"policySource"`
	// Namespaces are the namespaces scanned, sorted.
	Namespaces []namespaceReport `json:"namespaces"`
	// Workloads are the workloads judged, by namespace, kind and name.
	Workloads []workloadReport `json:"workloads"`
	// Summaries are per policy.
	Summaries []policySummary `json:"summaries"`
	// Skipped are the system namespaces -A left out.
	Skipped []string `json:"skippedNamespaces,omitempty"`
	Totals  totals   `json:"totals"`
}

// namespaceReport sums up one namespace.
type namespaceReport struct {
	Namespace string `json:"namespace"`
	// Policies select the namespace; none: nothing was judged there.
	Policies []string `json:"policies"`
	// Credentials is CredentialsPullSecrets or CredentialsAnonymous.
	Credentials string `json:"credentials"`
	Workloads   int    `json:"workloads"`
	InViolation int    `json:"inViolation"`
	// BloatBytes sums the toolchain bytes of the violating images of its
	// workloads, each image once per workload.
	BloatBytes int64 `json:"bloatBytes"`
}

// workloadReport is one workload and the results of its images.
type workloadReport struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Result is the worst of its images': error, fail, warn, skip or pass.
	Result string        `json:"result"`
	Error  string        `json:"error,omitempty"`
	Images []imageReport `json:"images"`
}

// imageReport is one image of a workload under one policy.
type imageReport struct {
	// Image is the reference judged; Written the one the spec names; From
	// says which: "running" (the digest a Pod runs) or "spec".
	Image     string   `json:"image"`
	Written   string   `json:"written"`
	From      string   `json:"from"`
	Container string   `json:"container"`
	Policy    string   `json:"policy"`
	Result    string   `json:"result"`
	Action    string   `json:"action,omitempty"`
	Rules     []string `json:"rules"`
	Message   string   `json:"message"`
	Digest    string   `json:"digest,omitempty"`
	// BloatBytes is the compressed size of its toolchain layers.
	BloatBytes int64 `json:"bloatBytes"`
}

// policySummary is fleet.Summary in JSON.
type policySummary struct {
	Policy               string             `json:"policy"`
	WorkloadsScanned     int                `json:"workloadsScanned"`
	WorkloadsInViolation int                `json:"workloadsInViolation"`
	NamespacesAffected   int                `json:"namespacesAffected"`
	Namespaces           []policyNamespaces `json:"namespaces"`
}

// policyNamespaces is fleet.NamespaceSummary in JSON.
type policyNamespaces struct {
	Namespace   string `json:"namespace"`
	Workloads   int    `json:"workloads"`
	InViolation int    `json:"inViolation"`
	BloatBytes  int64  `json:"bloatBytes"`
}

// totals sum up the scan; Errors counts the workloads with an image that
// could not be inspected or that could not be judged at all.
type totals struct {
	Namespaces         int   `json:"namespaces"`
	NamespacesAffected int   `json:"namespacesAffected"`
	Workloads          int   `json:"workloads"`
	InViolation        int   `json:"inViolation"`
	Errors             int   `json:"errors"`
	BloatBytes         int64 `json:"bloatBytes"`
}

// newReport words the results of a scan, and for each namespace the
// policies that select it, also when nothing runs there.
func newReport(s *snapshot, creds *credentials, scanned *fleet.Scanned) *report {
	results := scanned.Workloads
	r := &report{Policies: s.policyNames(), PolicySource: s.source, Skipped: s.skipped,
		Workloads: []workloadReport{}, Summaries: []policySummary{}}
	byNS := map[string]*namespaceReport{}
	for _, n := range s.namespaceNames() {
		policies := scanned.Policies[n]
		if policies == nil {
			policies = []string{}
		}
		r.Namespaces = append(r.Namespaces, namespaceReport{Namespace: n, Policies: policies, Credentials: creds.mode[n]})
	}
	for i := range r.Namespaces {
		byNS[r.Namespaces[i].Namespace] = &r.Namespaces[i]
	}
	for i := range results {
		w := workloadOf(&results[i])
		ns := byNS[w.Namespace]
		if ns == nil { // not asked for: cannot happen, but never drop it
			r.Namespaces = append(r.Namespaces, namespaceReport{Namespace: w.Namespace, Policies: results[i].Policies})
			ns = &r.Namespaces[len(r.Namespaces)-1]
			byNS[w.Namespace] = ns
		}
		ns.Workloads++
		r.Totals.Workloads++
		if w.Result == string(fleet.ResultError) {
			r.Totals.Errors++
		}
		if inViolation(&results[i]) {
			ns.InViolation++
			r.Totals.InViolation++
		}
		b := bloat(&results[i])
		ns.BloatBytes += b
		r.Totals.BloatBytes += b
		r.Workloads = append(r.Workloads, w)
	}
	for _, ns := range r.Namespaces {
		r.Totals.Namespaces++
		if ns.InViolation > 0 {
			r.Totals.NamespacesAffected++
		}
	}
	for _, sum := range fleet.Summarise(results) {
		ps := policySummary{Policy: sum.Policy, WorkloadsScanned: sum.WorkloadsScanned,
			WorkloadsInViolation: sum.WorkloadsInViolation, NamespacesAffected: sum.NamespacesAffected(),
			Namespaces: []policyNamespaces{}}
		for _, n := range sum.Namespaces {
			ps.Namespaces = append(ps.Namespaces, policyNamespaces(n))
		}
		r.Summaries = append(r.Summaries, ps)
	}
	return r
}

// workloadOf words one workload's results.
func workloadOf(res *fleet.WorkloadResult) workloadReport {
	w := workloadReport{Kind: res.Kind.Kind, Namespace: res.Namespace, Name: res.Name,
		Result: string(fleet.ResultPass), Images: []imageReport{}}
	if res.Err != nil {
		w.Result, w.Error = string(fleet.ResultError), res.Err.Error()
	}
	for _, img := range res.Images {
		rules := img.Rules
		if rules == nil {
			rules = []string{}
		}
		w.Images = append(w.Images, imageReport{Image: img.Reference, Written: img.Written, From: string(img.From),
			Container: img.Container, Policy: img.Policy, Result: string(img.Result), Action: string(img.Action),
			Rules: rules, Message: img.Message, Digest: img.Digest, BloatBytes: img.BloatBytes})
		if severity(string(img.Result)) > severity(w.Result) {
			w.Result = string(img.Result)
		}
	}
	return w
}

// severity orders results: the worst of a workload's images is its own.
func severity(result string) int {
	return slices.Index([]fleet.Result{fleet.ResultPass, fleet.ResultSkip, fleet.ResultWarn, fleet.ResultFail, fleet.ResultError}, fleet.Result(result))
}

// inViolation reports whether any image of the workload violates any
// policy.
func inViolation(w *fleet.WorkloadResult) bool {
	for i := range w.Images {
		if w.Images[i].Violates() {
			return true
		}
	}
	return false
}

// bloat sums the toolchain bytes of the workload's violating images, each
// image (by digest, else reference) once whatever the policies.
func bloat(w *fleet.WorkloadResult) int64 {
	most := map[string]int64{}
	for i := range w.Images {
		img := &w.Images[i]
		if img.Violates() {
			key := cmp.Or(img.Digest, img.Reference)
			most[key] = max(most[key], img.BloatBytes)
		}
	}
	var n int64
	for _, b := range most {
		n += b
	}
	return n
}

// write prints the report as a table or as JSON.
func (r *report) write(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var b strings.Builder
	r.writeTable(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable prints one row per image of each workload judged (or one
// for a workload that could not be judged), then one per namespace, then
// the totals, e.g.
//
//	NAMESPACE  WORKLOAD        RESULT  POLICY   FROM  BLOAT   IMAGE           FINDING
//	shop       Deployment/api  fail    default  spec  612 MB  golang-app:1    toolchain.go: Go toolchain ...
//
//	NAMESPACE  POLICIES  CREDENTIALS   WORKLOADS  IN VIOLATION  BLOAT
//	shop       default   pull secrets  2          1             612 MB
//
//	1 of 2 workloads in violation, in 1 of 1 namespaces, 612 MB of toolchains (built-in policy default)
func (r *report) writeTable(b *strings.Builder) {
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	if len(r.Workloads) > 0 {
		fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tRESULT\tPOLICY\tFROM\tBLOAT\tIMAGE\tFINDING")
	}
	for _, w := range r.Workloads {
		name := w.Kind + "/" + w.Name
		if w.Error != "" || len(w.Images) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t%s\n", w.Namespace, name, w.Result, cmp.Or(w.Error, "no image judged"))
		}
		for _, img := range w.Images {
			finding := "-"
			if img.Result != string(fleet.ResultPass) {
				finding = img.Message
				if len(img.Rules) > 0 {
					finding = img.Rules[0] + ": " + finding
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.Namespace, name, img.Result, img.Policy, img.From,
				bytesOrDash(img.BloatBytes), img.Image, finding)
		}
	}
	if len(r.Workloads) > 0 {
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	tw = tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOLICIES\tCREDENTIALS\tWORKLOADS\tIN VIOLATION\tBLOAT")
	var anonymous []string
	for _, ns := range r.Namespaces {
		creds := "pull secrets"
		if ns.Credentials == CredentialsAnonymous {
			creds = "anonymous"
			anonymous = append(anonymous, ns.Namespace)
		}
		if len(ns.Policies) == 0 {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t-\t-\n", ns.Namespace, creds)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", ns.Namespace, strings.Join(ns.Policies, ","), creds,
			ns.Workloads, ns.InViolation, bytesOrDash(ns.BloatBytes))
	}
	_ = tw.Flush()
	b.WriteString("\n")
	t := r.Totals
	fmt.Fprintf(b, "%d of %d workloads in violation, in %d of %d namespaces, %s of toolchains (%s)\n",
		t.InViolation, t.Workloads, t.NamespacesAffected, t.Namespaces, policy.HumanBytes(t.BloatBytes), r.policyPhrase())
	if len(r.Summaries) > 1 {
		for _, s := range r.Summaries {
			fmt.Fprintf(b, "  policy %s: %d of %d workloads in violation, in %d namespaces\n",
				s.Policy, s.WorkloadsInViolation, s.WorkloadsScanned, s.NamespacesAffected)
		}
	}
	if t.Errors > 0 {
		fmt.Fprintf(b, "%d workloads not fully judged: an image could not be inspected (see FINDING)\n", t.Errors)
	}
	if unselected := r.unselected(); len(unselected) > 0 {
		fmt.Fprintf(b, "no policy selects %s: nothing judged there\n", strings.Join(unselected, ", "))
	}
	if len(anonymous) > 0 {
		fmt.Fprintf(b, "pulled anonymously in %s: you may not get secrets and service accounts there\n", strings.Join(anonymous, ", "))
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(b, "not scanned: %s (the webhook never reviews them; name one with -n)\n", strings.Join(r.Skipped, ", "))
	}
}

// policyPhrase says which policies judged, e.g. "built-in policy default".
func (r *report) policyPhrase() string {
	names := strings.Join(r.Policies, ", ")
	switch r.PolicySource {
	case "cluster":
		return "cluster policies " + names
	case "built-in":
		return "built-in policy " + names
	}
	return "policy " + names + " from " + r.PolicySource
}

// unselected lists the namespaces no policy selects.
func (r *report) unselected() []string {
	var out []string
	for _, ns := range r.Namespaces {
		if len(ns.Policies) == 0 {
			out = append(out, ns.Namespace)
		}
	}
	return out
}

// bytesOrDash is n in human units, or "-" for none.
func bytesOrDash(n int64) string {
	if n <= 0 {
		return "-"
	}
	return policy.HumanBytes(n)
}
