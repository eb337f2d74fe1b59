package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/policy"
)

// scanned is what the background scan published: every policy, and the
// Reports of the demo namespaces.
type scanned struct {
	policies []v1alpha1.SlimImagePolicy
	reports  []reportsv1alpha1.Report
}

// waitScan waits until the background scan has judged every admitted
// workload: each policy's status.scan counts the workloads of the
// namespaces it selects.
func waitScan(ctx context.Context, c *cluster, rs []result) (*scanned, error) {
	admitted := map[string]int{} // per namespace
	for _, r := range rs {
		if !r.denied() {
			admitted[r.ns]++
		}
	}
	var got scanned
	err := devcluster.Poll(ctx, time.Minute, func() error {
		var ps v1alpha1.SlimImagePolicyList
		if err := c.client.List(ctx, &ps); err != nil {
			return err
		}
		var reps reportsv1alpha1.ReportList
		if err := c.client.List(ctx, &reps, client.MatchingLabels{controller.ReportManagedBy: controller.ReportSource}); err != nil {
			return err
		}
		results := 0
		for _, r := range reps.Items {
			results += len(r.Results)
		}
		want := 0
		for _, p := range ps.Items {
			if p.Status.Scan == nil {
				return fmt.Errorf("policy %s not scanned yet", p.Name)
			}
			want += int(p.Status.Scan.WorkloadsScanned)
		}
		if total := admitted[nsAudit] + admitted[nsEnforce]; want != total || results != total {
			return fmt.Errorf("scanned %d workloads with %d results, want %d", want, results, total)
		}
		got = scanned{policies: ps.Items, reports: reps.Items}
		return nil
	})
	return &got, err
}

// printScan prints the policies as kubectl get sip does, the Reports as
// kubectl get reports -A, and their failing results.
func printScan(out io.Writer, s *scanned) {
	fmt.Fprintln(out, "The webhook's background scan judges the running workloads (the digests their Pods run when they report them)")
	fmt.Fprintln(out, "and writes one openreports.io Report per namespace and policy, and each policy's status.scan.")
	fmt.Fprintln(out, "\n$ kubectl get sip")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODE\tSCANNED\tIN VIOLATION\tNAMESPACES")
	for _, p := range s.policies {
		st := p.Status.Scan
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", p.Name, p.Spec.Mode, st.WorkloadsScanned, st.WorkloadsInViolation, st.NamespacesAffected)
	}
	_ = tw.Flush()
	fmt.Fprintln(out, "\n$ kubectl get reports -A")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tPASS\tFAIL\tWARN\tERROR\tSKIP")
	for _, r := range s.reports {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", r.Namespace, r.Name, r.Summary.Pass, r.Summary.Fail, r.Summary.Warn, r.Summary.Error, r.Summary.Skip)
	}
	_ = tw.Flush()
	fmt.Fprintln(out, "\nResults other than pass (kubectl get reports -A -o yaml):")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tRESULT\tRULE\tBLOAT\tJUDGED")
	for _, r := range s.reports {
		for _, res := range r.Results {
			if res.Result == "pass" {
				continue
			}
			bloat := "-"
			if n, err := strconv.ParseInt(res.Properties[controller.PropBloat], 10, 64); err == nil {
				bloat = policy.HumanBytes(n)
			}
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\n", r.Namespace, res.Subjects[0].Kind, res.Subjects[0].Name, res.Result, res.Rule, bloat, res.Properties[controller.PropFrom])
		}
	}
	_ = tw.Flush()
}

// checkScan: in each Report, a workload fails exactly when the default
// policy denies its image.
func checkScan(rs []result, s *scanned) []string {
	failed := map[string]bool{}
	judged := map[string]bool{}
	for _, r := range s.reports {
		for _, res := range r.Results {
			key := r.Namespace + "/" + res.Subjects[0].Name
			judged[key] = true
			failed[key] = failed[key] || res.Result == "fail"
		}
	}
	var problems []string
	for _, r := range rs {
		key := r.ns + "/" + r.name
		if r.denied() || !slices.Contains([]string{nsAudit, nsEnforce}, r.ns) {
			if judged[key] {
				problems = append(problems, key+": in a Report, but it does not run under a policy")
			}
			continue
		}
		if want := r.eval.Verdict == policy.VerdictDeny; failed[key] != want || !judged[key] {
			problems = append(problems, fmt.Sprintf("%s: the scan reported fail=%v (judged %v), want %v", key, failed[key], judged[key], want))
		}
	}
	return problems
}
