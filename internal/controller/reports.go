package controller

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/policy"
)

// +kubebuilder:rbac:groups=openreports.io,resources=reports,verbs=get;list;watch;create;update;patch;delete

// ReportSource is the source of slimgate's Reports and of each result.
const ReportSource = "slimgate"

// Labels of slimgate's Reports.
const (
	// ReportManagedBy marks the Reports slimgate writes (and deletes).
	ReportManagedBy = "app.kubernetes.io/managed-by"
	// ReportPolicyLabel names the policy a Report is about (when the name
	// fits in a label; the Report's name always derives from it).
	ReportPolicyLabel = "slimgate.dev/policy"
)

// MaxReportResults bounds the results of one Report: a Report is one
// object, and etcd keeps objects under about 1.5 MB. Results beyond it are
// left out, passes first; the summary still counts them all.
const MaxReportResults = 1000

// Byte bounds of a Report, whatever the lengths of the image references
// (the workload's author writes them): results that would take its JSON
// over maxReportBytes are left out as those over MaxReportResults are,
// and each text of a result (description, property values) is cut to
// maxResultText bytes.
const (
	maxReportBytes = 1 << 20
	maxResultText  = 2 << 10
)

// reportPage is the number of Reports read at a time.
const reportPage = 100

// Result properties of slimgate's Reports.
const (
	PropImage      = "image"         // the reference judged
	PropWritten    = "writtenImage"  // the reference the spec names, when another was judged
	PropFrom       = "imageSource"   // running (the Pod's digest) or spec
	PropContainer  = "container"     // the container's (or image volume's) name
	PropPlace      = "containerType" // container, initContainer, ephemeralContainer, volume
	PropDigest     = "digest"        // the manifest digest judged
	PropBloat      = "bloatBytes"    // toolchain bytes, decimal
	PropAction     = "action"        // deny, warn or audit: what admission does with the finding
	PropRules      = "rules"         // every rule id found, comma-separated
	PropUnreviewed = "unreviewed"    // "true": a Pod of the workload got in without a review
)

// Result properties naming the SlimImageExceptions that waived findings
// of an image (all of them: the result is skip; some: the rest decide).
const (
	PropExceptions = "exceptions"       // their names, comma-separated
	PropExpires    = "exceptionsExpire" // when each expires (RFC 3339), in the same order
	PropWaived     = "waivedRules"      // every rule id they waived, comma-separated
)

// ReportName is the name of the Report on policy in each namespace:
// "slimgate-" and the policy's name, or a hash of it when too long.
func ReportName(policyName string) string {
	const prefix = "slimgate-"
	if len(prefix)+len(policyName) <= 253 {
		return prefix + policyName
	}
	sum := sha256.Sum256([]byte(policyName))
	return prefix + policyName[:200] + "-" + hex.EncodeToString(sum[:8])
}

// buildReports turns scan results into one Report per namespace and
// policy that scanned workloads there (a namespace without workloads has
// none). unreviewed names the workloads a Pod of which got in without a
// review; at is the scan's time.
func buildReports(results []fleet.WorkloadResult, unreviewed map[types.UID]bool, at metav1.Time) []*reportsv1alpha1.Report {
	type key struct{ namespace, policy string }
	byKey := map[key]*reportsv1alpha1.Report{}
	var order []key
	for _, w := range results {
		for _, p := range w.Policies {
			k := key{w.Namespace, p}
			if byKey[k] == nil {
				byKey[k] = newReport(w.Namespace, p)
				order = append(order, k)
			}
		}
		for _, r := range w.Images {
			rep := byKey[key{w.Namespace, r.Policy}]
			if rep == nil {
				continue
			}
			rep.Results = append(rep.Results, reportResult(w, r, unreviewed[w.UID], at))
		}
		if w.Err != nil {
			for _, p := range w.Policies {
				rep := byKey[key{w.Namespace, p}]
				rep.Results = append(rep.Results, unjudgedResult(w, p, at))
			}
		}
	}
	out := make([]*reportsv1alpha1.Report, 0, len(order))
	for _, k := range order {
		rep := byKey[k]
		for _, r := range rep.Results {
			count(&rep.Summary, r.Result)
		}
		limit(rep)
		out = append(out, rep)
	}
	return out
}

// limit leaves out the results over MaxReportResults or maxReportBytes,
// passes first.
func limit(rep *reportsv1alpha1.Report) {
	if len(rep.Results) <= MaxReportResults && jsonSize(rep) <= maxReportBytes {
		return
	}
	slices.SortStableFunc(rep.Results, func(a, b reportsv1alpha1.ReportResult) int {
		return cmp.Compare(resultRank(b.Result), resultRank(a.Result))
	})
	results := rep.Results
	rep.Results = nil
	rep.Configuration = &reportsv1alpha1.ReportConfiguration{Limits: reportsv1alpha1.Limits{MaxResults: MaxReportResults}}
	size, n := jsonSize(rep), 0
	for n < min(len(results), MaxReportResults) {
		size += jsonSize(&results[n]) + 1 // and a comma
		if size > maxReportBytes {
			break
		}
		n++
	}
	rep.Results = results[:n]
}

// jsonSize is the length of v's JSON (over the bound when it has none).
func jsonSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return maxReportBytes + 1
	}
	return len(b)
}

func newReport(namespace, policyName string) *reportsv1alpha1.Report {
	labels := map[string]string{ReportManagedBy: ReportSource}
	if len(policyName) <= 63 {
		labels[ReportPolicyLabel] = policyName
	}
	return &reportsv1alpha1.Report{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: ReportName(policyName), Labels: labels},
		Source:     ReportSource,
	}
}

// reportResult is the result of one image of a workload under a policy.
func reportResult(w fleet.WorkloadResult, r fleet.ImageResult, unreviewed bool, at metav1.Time) reportsv1alpha1.ReportResult {
	props := map[string]string{
		PropImage:     r.Reference,
		PropFrom:      string(r.From),
		PropContainer: r.Container,
		PropPlace:     string(r.Source),
	}
	if r.Written != r.Reference {
		props[PropWritten] = r.Written
	}
	if r.Digest != "" {
		props[PropDigest] = r.Digest
	}
	if r.BloatBytes > 0 {
		props[PropBloat] = strconv.FormatInt(r.BloatBytes, 10)
	}
	if r.Action != "" {
		props[PropAction] = string(r.Action)
	}
	if len(r.Rules) > 1 {
		props[PropRules] = strings.Join(r.Rules, ",")
	}
	if len(r.Waived) > 0 {
		var names, expires, rules []string
		for _, e := range r.Waived {
			names = append(names, e.Exception)
			expires = append(expires, e.Expires.UTC().Format(time.RFC3339))
			rules = append(rules, e.Rules...)
		}
		props[PropExceptions] = strings.Join(names, ",")
		props[PropExpires] = strings.Join(expires, ",")
		props[PropWaived] = strings.Join(rules, ",")
	}
	msg := r.Message
	if unreviewed {
		props[PropUnreviewed] = "true"
		msg = "created without a review (the webhook was unavailable): " + msg
	}
	for k, v := range props {
		props[k] = policy.Truncate(v, maxResultText)
	}
	return reportsv1alpha1.ReportResult{
		Source:      ReportSource,
		Policy:      r.Policy,
		Rule:        r.Rule(),
		Result:      reportsv1alpha1.Result(r.Result),
		Scored:      true,
		Timestamp:   metav1.Timestamp{Seconds: at.Unix()},
		Description: policy.Truncate(msg, maxResultText),
		Subjects:    subjectOf(w),
		Properties:  props,
	}
}

// unjudgedResult is the error result of a workload the scan could not
// judge under policyName, with the reason.
func unjudgedResult(w fleet.WorkloadResult, policyName string, at metav1.Time) reportsv1alpha1.ReportResult {
	return reportsv1alpha1.ReportResult{
		Source:      ReportSource,
		Policy:      policyName,
		Result:      reportsv1alpha1.Result(fleet.ResultError),
		Scored:      true,
		Timestamp:   metav1.Timestamp{Seconds: at.Unix()},
		Description: policy.Truncate("not judged: "+w.Err.Error(), maxResultText),
		Subjects:    subjectOf(w),
	}
}

// subjectOf is the subject of w's results: the workload.
func subjectOf(w fleet.WorkloadResult) []corev1.ObjectReference {
	return []corev1.ObjectReference{{
		APIVersion: w.Kind.GroupVersion().String(), Kind: w.Kind.Kind,
		Namespace: w.Namespace, Name: w.Name, UID: w.UID,
	}}
}

func count(s *reportsv1alpha1.ReportSummary, r reportsv1alpha1.Result) {
	switch fleet.Result(r) {
	case fleet.ResultPass:
		s.Pass++
	case fleet.ResultFail:
		s.Fail++
	case fleet.ResultWarn:
		s.Warn++
	case fleet.ResultError:
		s.Error++
	case fleet.ResultSkip:
		s.Skip++
	}
}

// resultRank orders results for keeping when a Report is full.
func resultRank(r reportsv1alpha1.Result) int {
	switch fleet.Result(r) {
	case fleet.ResultFail:
		return 4
	case fleet.ResultError:
		return 3
	case fleet.ResultWarn:
		return 2
	case fleet.ResultSkip:
		return 1
	}
	return 0
}

// resultKey names a result across scans, to keep its timestamp while it
// stays the same.
func resultKey(r *reportsv1alpha1.ReportResult) string {
	uid := ""
	if len(r.Subjects) > 0 {
		uid = string(r.Subjects[0].UID)
	}
	return uid + "\x00" + r.Properties[PropPlace] + "\x00" + r.Properties[PropContainer] + "\x00" +
		r.Properties[PropImage] + "\x00" + r.Rule + "\x00" + string(r.Result) + "\x00" + r.Description
}

// writeReports creates or updates the Reports and deletes those of
// slimgate no longer wanted (namespaces without workloads, deleted
// policies), reading them reportPage at a time. A result unchanged since
// the Report was written keeps its timestamp, so a Report whose results
// did not change is not written.
func writeReports(ctx context.Context, c client.Client, api client.Reader, want []*reportsv1alpha1.Report) error {
	wanted := make(map[types.NamespacedName]*reportsv1alpha1.Report, len(want))
	for _, w := range want {
		wanted[types.NamespacedName{Namespace: w.Namespace, Name: w.Name}] = w
	}
	var errs []error // one Report that cannot be written (a namespace being deleted) stops no other
	for cont := ""; ; {
		var page reportsv1alpha1.ReportList
		if err := api.List(ctx, &page, client.MatchingLabels{ReportManagedBy: ReportSource}, client.Limit(reportPage), client.Continue(cont)); err != nil {
			return errors.Join(append(errs, fmt.Errorf("listing reports: %w", err))...)
		}
		for i := range page.Items {
			old := &page.Items[i]
			key := types.NamespacedName{Namespace: old.Namespace, Name: old.Name}
			w := wanted[key]
			delete(wanted, key)
			if w == nil {
				if err := c.Delete(ctx, old); client.IgnoreNotFound(err) != nil {
					errs = append(errs, fmt.Errorf("deleting report %s: %w", key, err))
				}
			} else if err := updateReport(ctx, c, old, w); err != nil {
				errs = append(errs, fmt.Errorf("updating report %s: %w", key, err))
			}
		}
		if cont = page.Continue; cont == "" {
			break
		}
	}
	for _, w := range want {
		key := types.NamespacedName{Namespace: w.Namespace, Name: w.Name}
		if wanted[key] == nil {
			continue // found
		}
		if err := c.Create(ctx, w); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("creating report %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// updateReport writes w over old, keeping the timestamps of the results
// that did not change, unless nothing changed.
func updateReport(ctx context.Context, c client.Client, old, w *reportsv1alpha1.Report) error {
	stamps := map[string]metav1.Timestamp{}
	for i := range old.Results {
		stamps[resultKey(&old.Results[i])] = old.Results[i].Timestamp
	}
	for i := range w.Results {
		if t, ok := stamps[resultKey(&w.Results[i])]; ok {
			w.Results[i].Timestamp = t
		}
	}
	if equality.Semantic.DeepEqual(old.Results, w.Results) && old.Summary == w.Summary &&
		old.Source == w.Source && equality.Semantic.DeepEqual(old.Configuration, w.Configuration) &&
		equality.Semantic.DeepEqual(old.Labels, w.Labels) {
		return nil
	}
	upd := old.DeepCopy()
	upd.Labels, upd.Source, upd.Summary, upd.Results, upd.Configuration = w.Labels, w.Source, w.Summary, w.Results, w.Configuration
	return c.Update(ctx, upd)
}
