package admission

import (
	"context"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// Assessment is what one policy makes of one image of a workload that
// exists already: the judgment a review of its creation would make, kept
// whole for reports instead of worded into a response.
type Assessment struct {
	// Image is the image judged.
	Image Image
	// Policy is the policy, with its defaults applied.
	Policy *v1alpha1.SlimImagePolicy
	// Action is the strictest action of the findings; "" when there are
	// none (the image passes).
	Action policy.Action
	// Findings are the findings of that action, without repeats across
	// platforms.
	Findings []policy.Finding
	// Excepted are the findings that the namespace's exceptions waive
	// (each names its exception in Excepted), of any action, one per
	// rule: they count towards neither Action nor Findings.
	Excepted []policy.Finding
	// Digest is the manifest digest judged (of the first platform); empty
	// when the image was not inspected.
	Digest string
	// BloatBytes is the compressed size of the image's toolchain layers,
	// of the platform with the most; 0 when none could be attributed.
	BloatBytes int64
	// Failure is set when the image could not be inspected; its Invalid
	// says whose doing that was (see registry.Reason.Invalid).
	Failure *policy.Failure
}

// PoliciesFor returns the policies that select namespace, with their
// defaults applied, sorted by name: those a review of a workload there
// applies.
func (h *Handler) PoliciesFor(ctx context.Context, namespace string) ([]*v1alpha1.SlimImagePolicy, error) {
	ps, err := h.policiesFor(ctx, namespace)
	if err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.SlimImagePolicy, len(ps))
	for i, p := range ps {
		out[i] = p.object
	}
	return out, nil
}

// Assess judges imgs, images of w, a workload that exists, under every
// policy that selects its namespace, as a review of the workload's
// creation would (the same bounds, exclusions, inspections, evaluations
// and exceptions, by the clock of Options.Now), and records nothing.
// w.Spec supplies the credentials (its service account and image pull
// secrets); w.Kind and w.Object the workload exceptions name. written,
// when not nil, holds for each image of imgs the reference the workload
// writes, when it differs from the one judged (a scan judges the digest a
// Pod runs): exceptions match images as written. Tags are not resolved
// anew (registry.Request.Revalidate): a scan reads what the cache holds,
// for as long as it holds it. It returns one Assessment per image and
// policy that judges it (an excluded image has none), in the order of
// imgs.
func (h *Handler) Assess(ctx context.Context, w *Workload, imgs []Image, written []string) ([]Assessment, error) {
	var named []Image
	var writtenOf map[Image]string
	for i, img := range imgs {
		if img.Reference == "" {
			continue
		}
		named = append(named, img)
		if i < len(written) && written[i] != "" && written[i] != img.Reference {
			if writtenOf == nil {
				writtenOf = map[Image]string{}
			}
			writtenOf[img] = written[i]
		}
	}
	if len(named) == 0 {
		return nil, nil
	}
	namespace := w.Object.GetNamespace()
	policies, err := h.policiesFor(ctx, namespace)
	if err != nil || len(policies) == 0 {
		return nil, err
	}
	js := h.judge(ctx, namespace, w.Spec, named, policies, false)
	if js, err = h.waive(ctx, namespace, w, js, writtenOf, h.opts.Now()); err != nil {
		return nil, err
	}
	out := make([]Assessment, 0, len(js))
	for _, j := range js {
		a := Assessment{Image: j.image, Policy: j.policy, Action: j.strictest()}
		if a.Action != "" {
			a.Findings = j.findings(a.Action)
		}
		a.Excepted = j.excepted()
		for _, r := range j.results {
			if a.Digest == "" {
				a.Digest = r.Digest
			}
			if b := r.Bloat; b != nil && b.Known && b.ToolchainBytes > a.BloatBytes {
				a.BloatBytes = b.ToolchainBytes
			}
		}
		if f := j.failure; f != nil {
			a.Failure = &policy.Failure{Reason: f.reason, Detail: f.detail, Invalid: f.invalid}
		}
		out = append(out, a)
	}
	return out, nil
}
