package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/types"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/policy"
)

// Judge judges the images of workloads that exist, as a review of their
// creation would: *admission.Handler is the one slimgate uses.
type Judge interface {
	// PoliciesFor returns the policies that select a namespace.
	PoliciesFor(ctx context.Context, namespace string) ([]*v1alpha1.SlimImagePolicy, error)
	// Assess judges images of a workload under the policies that select
	// its namespace, exceptions applied to the references written (see
	// admission.Handler.Assess).
	Assess(ctx context.Context, w *admission.Workload, imgs []admission.Image, written []string) ([]admission.Assessment, error)
}

// Result is what a policy makes of one image, in the words of the
// OpenReports API (openreports.io).
type Result string

// Results. Skip is an image whose findings exceptions all waive.
const (
	ResultPass  Result = "pass"
	ResultFail  Result = "fail"
	ResultWarn  Result = "warn"
	ResultError Result = "error"
	ResultSkip  Result = "skip"
)

// ImageResult is one image of a workload under one policy.
type ImageResult struct {
	Target
	// Policy names the policy.
	Policy string
	// Result: fail for a finding whose action is deny or audit (Audit
	// records what Enforce would deny), warn for warn, error when the
	// image could not be inspected for a reason that is not the image's
	// own doing (registry.Reason.Invalid), skip when exceptions waive
	// every finding, pass otherwise. Waived findings count for nothing
	// else.
	Result Result
	// Action is the admission action of the findings ("" for none).
	Action policy.Action
	// Rules are the rule ids of the findings, without repeats (of a skip,
	// the rules waived); Rule the first, or RulePass.
	Rules []string
	// Message says what was found, in one line, and which exceptions
	// waived what.
	Message string
	// Waived are the exceptions that waived findings, in the order of
	// the findings, each with the rules it waived.
	Waived []Waived
	// Digest is the manifest digest judged, when inspected.
	Digest string
	// BloatBytes is the compressed size of the image's toolchain layers.
	BloatBytes int64
}

// Waived is an exception that waived findings of an image.
type Waived struct {
	policy.Waiver
	// Rules are the rule ids it waived.
	Rules []string
}

// RulePass is the rule id of a result with no findings.
const RulePass = "image"

// Rule returns the result's leading rule id.
func (r *ImageResult) Rule() string {
	if len(r.Rules) == 0 {
		return RulePass
	}
	return r.Rules[0]
}

// Violates reports whether the result is a finding of the image
// (fail or warn).
func (r *ImageResult) Violates() bool { return r.Result == ResultFail || r.Result == ResultWarn }

// WorkloadResult is one workload judged.
type WorkloadResult struct {
	Ref
	// Policies are the policies that select the workload's namespace,
	// sorted: each scanned it, whether or not it judged any image.
	Policies []string
	// Pods are the UIDs of the Pods the workload runs.
	Pods []types.UID
	// Images are the results, per target and policy.
	Images []ImageResult
	// Err is set when the workload could not be judged.
	Err error
}

// InViolation reports whether any image of the workload violates the
// policy.
func (w *WorkloadResult) InViolation(policyName string) bool {
	for i := range w.Images {
		if w.Images[i].Policy == policyName && w.Images[i].Violates() {
			return true
		}
	}
	return false
}

// Scanner judges every workload of a set of namespaces.
type Scanner struct {
	// Lister reads namespaces and workloads.
	Lister Lister
	// Judge judges their images.
	Judge Judge
	// Workers is the number of workloads judged at once (default 4).
	Workers int
	// Timeout bounds the judging of one workload (default 2m).
	Timeout time.Duration
	// Exclude lists namespaces never scanned: those the webhook never
	// reviews (kube-system, its own), whose workloads admission never
	// judges.
	Exclude []string
	// Progress, when set, is called after each workload with the numbers
	// judged and queued so far.
	Progress func(done, total int)
}

// Scanned is what a scan found.
type Scanned struct {
	// Workloads are the results, sorted by namespace, kind and name.
	Workloads []WorkloadResult
	// Policies names, for each namespace scanned (not excluded), the
	// policies that select it, in the order of Judge.PoliciesFor: empty
	// for one that no policy selects, whose workloads were not judged.
	Policies map[string][]string
}

// Scan judges every workload of the namespaces (nil: every namespace)
// under the policies that select each. Namespaces no policy selects are
// skipped. A workload that cannot be judged carries its error; Scan
// itself fails only when the namespaces, policies or objects cannot be
// read, or ctx ends.
func (s *Scanner) Scan(ctx context.Context, namespaces []string) (*Scanned, error) {
	if namespaces == nil {
		var err error
		if namespaces, err = s.Lister.Namespaces(ctx); err != nil {
			return nil, err
		}
	}
	type job struct {
		w        Workload
		policies []string
	}
	var jobs []job
	selecting := make(map[string][]string, len(namespaces))
	for _, ns := range namespaces {
		if slices.Contains(s.Exclude, ns) {
			continue
		}
		ps, err := s.Judge.PoliciesFor(ctx, ns)
		if err != nil {
			return nil, fmt.Errorf("policies of %s: %w", ns, err)
		}
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = p.Name
		}
		selecting[ns] = names
		if len(ps) == 0 {
			continue
		}
		objs, err := s.Lister.Objects(ctx, ns)
		if err != nil {
			return nil, err
		}
		for _, w := range Group(objs) {
			jobs = append(jobs, job{w: w, policies: names})
		}
	}
	out := make([]WorkloadResult, len(jobs))
	workers, timeout := s.Workers, s.Timeout
	if workers <= 0 {
		workers = 4
	}
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range min(workers, len(jobs)) {
		wg.Go(func() {
			for i := range next {
				out[i] = s.judge(ctx, &jobs[i].w, jobs[i].policies, timeout)
				if s.Progress != nil {
					mu.Lock()
					done++
					s.Progress(done, len(jobs))
					mu.Unlock()
				}
			}
		})
	}
	hosts := make([]string, len(jobs))
	for i := range jobs {
		hosts[i] = firstRegistry(&jobs[i].w)
	}
feed:
	for _, i := range interleave(hosts) {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Scanned{Workloads: out, Policies: selecting}, nil
}

// firstRegistry names the registry of a workload's first image ("" when
// it has none that parses).
func firstRegistry(w *Workload) string {
	for _, img := range admission.Images(w.Spec, w.Path) {
		if ref, err := name.ParseReference(strings.TrimSpace(img.Reference)); err == nil {
			return ref.Context().RegistryStr()
		}
	}
	return ""
}

// interleave orders the indexes of hosts round-robin across the distinct
// hosts, each host's in their order: the scan's requests are rate-limited
// per registry, and workloads grouped by namespace often share one, so
// taken in order the workers would all wait on one registry's limit while
// the others idle.
func interleave(hosts []string) []int {
	var names []string
	queues := map[string][]int{}
	for i, h := range hosts {
		if _, ok := queues[h]; !ok {
			names = append(names, h)
		}
		queues[h] = append(queues[h], i)
	}
	out := make([]int, 0, len(hosts))
	for len(out) < len(hosts) {
		for _, h := range names {
			if q := queues[h]; len(q) > 0 {
				out = append(out, q[0])
				queues[h] = q[1:]
			}
		}
	}
	return out
}

// judge judges one workload.
func (s *Scanner) judge(ctx context.Context, w *Workload, policies []string, timeout time.Duration) WorkloadResult {
	res := WorkloadResult{Ref: w.Ref(), Policies: policies}
	for _, p := range w.Pods {
		res.Pods = append(res.Pods, p.UID)
	}
	targets := Targets(w)
	if len(targets) == 0 {
		return res
	}
	spec := w.Spec
	if spec == nil && len(w.Pods) > 0 {
		spec = &w.Pods[0].Spec
	}
	imgs := make([]admission.Image, len(targets))
	written := make([]string, len(targets))
	for i, t := range targets {
		imgs[i], written[i] = t.Image, t.Written
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	as, err := s.Judge.Assess(ctx, &admission.Workload{Object: w.Object, Kind: w.Kind, Spec: spec, Path: w.Path}, imgs, written)
	if err != nil {
		res.Err = fmt.Errorf("judging %s: %w", res.Ref, err)
		return res
	}
	// Assess keeps the order of imgs, each image followed by its policies.
	at := 0
	for _, a := range as {
		for at < len(targets) && targets[at].Image != a.Image {
			at++
		}
		if at == len(targets) {
			break
		}
		res.Images = append(res.Images, imageResult(targets[at], a))
	}
	return res
}

// imageResult words one assessment.
func imageResult(t Target, a admission.Assessment) ImageResult {
	r := ImageResult{Target: t, Policy: a.Policy.Name, Action: a.Action, Digest: a.Digest, BloatBytes: a.BloatBytes, Result: ResultPass}
	for _, f := range a.Findings {
		if !slices.Contains(r.Rules, f.Rule) {
			r.Rules = append(r.Rules, f.Rule)
		}
	}
	switch {
	case a.Failure != nil && !a.Failure.Invalid:
		r.Result, r.Message = ResultError, a.Failure.String()
		if len(r.Rules) == 0 {
			r.Rules = []string{policy.RuleInspectionFailed}
		}
	case a.Action == policy.ActionWarn:
		r.Result = ResultWarn
	case a.Action != "":
		r.Result = ResultFail
	case len(a.Excepted) > 0:
		r.Result = ResultSkip
	}
	r.Waived = waived(a.Excepted)
	if r.Message == "" {
		r.Message = message(a)
	}
	var lines []string
	for _, w := range r.Waived {
		if r.Result == ResultSkip {
			r.Rules = append(r.Rules, w.Rules...)
		}
		lines = append(lines, w.Waives(w.Rules))
	}
	switch {
	case r.Result == ResultSkip:
		r.Message = strings.Join(lines, "; ")
	case len(lines) > 0:
		r.Message += "; " + strings.Join(lines, "; ")
	}
	return r
}

// waived groups the findings exceptions waived by exception, in the
// order of the findings.
func waived(excepted []policy.Finding) []Waived {
	var out []Waived
	for _, f := range excepted {
		at := slices.IndexFunc(out, func(w Waived) bool {
			return w.Exception == f.Excepted.Exception && w.Namespace == f.Excepted.Namespace
		})
		if at < 0 {
			at = len(out)
			out = append(out, Waived{Waiver: *f.Excepted})
		}
		if !slices.Contains(out[at].Rules, f.Rule) {
			out[at].Rules = append(out[at].Rules, f.Rule)
		}
	}
	return out
}

// message is one line on an assessment: its first finding, the bloat, and
// how many more findings there are.
func message(a admission.Assessment) string {
	if len(a.Findings) == 0 {
		return "no findings"
	}
	var b strings.Builder
	b.WriteString(a.Findings[0].Message)
	if a.BloatBytes > 0 {
		fmt.Fprintf(&b, " (%s of toolchain layers)", policy.HumanBytes(a.BloatBytes))
	}
	if n := len(a.Findings) - 1; n > 0 {
		fmt.Fprintf(&b, "; and %d more findings", n)
	}
	return b.String()
}
