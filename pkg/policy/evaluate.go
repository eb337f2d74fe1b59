package policy

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
)

// maxRelated caps the secondary evidence kept per finding.
const maxRelated = 5

// ActionFor maps a policy mode to the action of its findings. An empty
// mode is the default, Enforce; a mode that is not one of the three is
// treated as Enforce too (Validate rejects it, and Evaluate notes it).
func ActionFor(m v1alpha1.Mode) Action {
	switch m {
	case v1alpha1.ModeWarn:
		return ActionWarn
	case v1alpha1.ModeAudit:
		return ActionAudit
	default:
		return ActionDeny
	}
}

// Evaluate judges one image's facts under one policy spec; a nil spec is
// the built-in default policy. It compiles the spec on every call and
// reads the whole history, however long that takes: callers that judge
// many images, or must answer by a deadline, compile once (Compile) and
// call (*Compiled).Evaluate.
func Evaluate(spec *v1alpha1.SlimImagePolicySpec, f *image.Facts) Result {
	c, _ := Compile(spec) // an invalid spec is applied as far as it goes; the notes say what was ignored
	return c.evaluate(f, nil)
}

// Evaluate judges one image's facts under the compiled policy. It stops at
// ctx's end, before the next history step: the image's author writes the
// history, so however many and long its lines are, a caller with a
// deadline gets its answer by then. A result cut short says so with an
// inspection.invalid finding (reason EvaluationDeadline) whose action
// follows the mode: what was not read cannot be passed as clean, so under
// Enforce the image is denied, never admitted unjudged. Incomplete reports
// such a result.
func (c *Compiled) Evaluate(ctx context.Context, f *image.Facts) Result {
	return c.evaluate(f, ctx.Done())
}

// ReasonEvaluationDeadline is the evidence reason of the finding of an
// evaluation stopped at its context's end.
const ReasonEvaluationDeadline = "EvaluationDeadline"

// stopped reports whether done is closed; a nil done never is.
func stopped(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Incomplete reports whether the evaluation was stopped before it read the
// whole history. Such a result holds for that deadline only: callers do
// not remember it.
func (r Result) Incomplete() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool {
		return f.Rule == RuleInspectionInvalid && f.Evidence.Reason == ReasonEvaluationDeadline
	})
}

// evaluate judges f, stopping once done is closed (nil: never).
func (c *Compiled) evaluate(f *image.Facts, done <-chan struct{}) Result {
	if f == nil {
		return Result{Verdict: VerdictAllow, Findings: []Finding{}, Notes: []string{"no image facts: not judged"}}
	}
	res := Result{
		Image:       f.Reference,
		Digest:      f.Digest,
		IndexDigest: f.IndexDigest,
		Findings:    []Finding{},
		Size:        Size{Compressed: f.CompressedSize, Layers: len(f.Layers)},
		Notes:       slices.Clone(c.notes),
	}
	if f.Platform.OS != "" || f.Platform.Architecture != "" {
		res.Platform = f.Platform.String()
	}
	action, sel := c.action, c.sel

	an := analyze(c.det, f, done)
	res.Notes = append(res.Notes, an.notes...)
	byRule := an.judge()
	var attributed []hit
	for _, r := range c.det.rules {
		hits := byRule[r.ID]
		if len(hits) == 0 || !sel.rules[r.ID] {
			continue
		}
		res.Findings = append(res.Findings, hitFinding(r, hits, f, action, an.versions[r.ID]))
		attributed = append(attributed, hits...)
	}
	res.Findings = append(res.Findings, sizeFindings(c.spec.SizeBudget, sel, f, action)...)
	res.Findings = append(res.Findings, digestFindings(c.spec, f.Reference, action)...)
	if len(an.unreadParts) > 0 {
		res.Findings = append(res.Findings, unreadFinding(f, an.unreadParts[0], action))
	}
	if an.unread > 0 {
		res.Findings = append(res.Findings, cutFinding(f, an, action))
	}
	if len(attributed) > 0 {
		res.Bloat = bloat(f, attributed)
	}
	if !f.HistoryMapped && len(f.History) > 0 && len(f.Layers) > 0 {
		res.Notes = append(res.Notes, "history entries do not pair one-to-one with layers: bytes are not attributed to steps")
	}
	res.Verdict = verdict(res.Findings)
	return res
}

// cutFinding is the finding of an evaluation stopped with an.unread
// history steps left: whatever the read steps showed, the rest was not
// judged. It is not subject to the policy's rule selection.
func cutFinding(f *image.Facts, an analysis, action Action) Finding {
	read := len(an.steps) - an.unread
	fd := Finding{
		Rule:   RuleInspectionInvalid,
		Action: action,
		Message: fmt.Sprintf("Image not judged in time: the history analysis stopped at the deadline after %d of %d steps",
			read, len(an.steps)),
		Evidence: Evidence{Reason: ReasonEvaluationDeadline},
		Remedy:   "build with fewer and shorter steps (a multi-stage build keeps the build steps out of the final image's history)",
	}
	if i := an.steps[read].Index; i >= 0 {
		fd.Evidence.HistoryIndex = &i
	}
	if f.Platform.OS != "" {
		fd.Platform = f.Platform.String()
	}
	return fd
}

// reasonTooLarge is the inspector's reason for content of the image's
// author past slimgate's caps.
const reasonTooLarge = "TooLarge"

// unreadFinding is the finding of a step that a bound of the history
// reader left partly unread: its author chose to write what was not read,
// which may install a toolchain, so it is not passed as clean. Like
// cutFinding, it is not subject to the policy's rule selection.
func unreadFinding(f *image.Facts, u unreadPart, action Action) Finding {
	r := ruleByID(RuleInspectionInvalid)
	fd := Finding{
		Rule:     r.ID,
		Action:   action,
		Message:  r.Title + Failure{Reason: reasonTooLarge, Detail: u.note}.because(),
		Evidence: Evidence{Reason: reasonTooLarge},
		Remedy:   "write shorter RUN steps, without scripts nested in sh -c deeper than three levels or variables that double themselves (a multi-stage build keeps the build steps out of the final image's history)",
	}
	if u.index >= 0 {
		i := u.index
		fd.Evidence.HistoryIndex = &i
	}
	if f.Platform.OS != "" {
		fd.Platform = f.Platform.String()
	}
	return fd
}

// decides reports whether a rule's hits make a finding: weak signals
// (a default command, a helper package such as make) only corroborate.
func decides(hits []hit) bool {
	return slices.ContainsFunc(hits, func(h hit) bool { return h.strength >= moderate })
}

// judge decides which rules the analysis' hits make findings of, whatever
// the policy selects:
//   - an install a later step removed no longer counts for its toolchain;
//     its bytes still ship, so it counts for bloat.removed-later instead;
//   - what only describes a toolchain (an ENV line, a command run) is
//     dropped when every install of it that the history shows was removed;
//   - weak signals only corroborate (decides);
//   - an entry that requires other rules stands only next to them.
func (an *analysis) judge() map[string][]hit {
	raw := map[string][]hit{}
	for _, h := range an.hits {
		raw[h.rule] = append(raw[h.rule], h)
	}
	out := map[string][]hit{}
	var later []hit
	for _, r := range an.det.rules {
		hits := raw[r.ID]
		installs, present := 0, 0
		for _, h := range hits {
			if h.kind == kindInstall {
				installs++
				if h.removedBy < 0 {
					present++
				}
			}
		}
		var keep []hit
		for _, h := range hits {
			switch {
			case h.kind == kindInstall && h.removedBy >= 0:
				if h.strength >= moderate {
					b := h
					b.rule = RuleBloatRemovedLater
					b.what = fmt.Sprintf("%s: %s, removed by history #%d", r.Title, h.what, h.removedBy)
					later = append(later, b)
				}
			case h.kind == kindDescribes && installs > 0 && present == 0:
			default:
				keep = append(keep, h)
			}
		}
		if decides(keep) {
			out[r.ID] = keep
		}
	}
	if len(later) > 0 {
		out[RuleBloatRemovedLater] = later
	}
	for rule, reqs := range an.det.requires {
		for _, req := range reqs {
			if _, ok := out[req]; !ok {
				delete(out, rule)
				break
			}
		}
	}
	return out
}

func verdict(fs []Finding) Verdict {
	for _, f := range fs {
		if f.Action == ActionDeny {
			return VerdictDeny
		}
	}
	return VerdictAllow
}

// hitFinding turns a rule's hits into its one finding: the strongest hit
// is the evidence, the others are kept as related evidence.
func hitFinding(r Rule, hits []hit, f *image.Facts, action Action, version string) Finding {
	ordered := slices.Clone(hits)
	slices.SortStableFunc(ordered, func(a, b hit) int {
		if c := cmp.Compare(b.strength, a.strength); c != 0 {
			return c
		}
		return cmp.Compare(hitBytes(f, b), hitBytes(f, a))
	})
	best := ordered[0]
	fd := Finding{
		Rule:     r.ID,
		Action:   action,
		Message:  r.Title + ": " + best.what + where(f, best),
		Evidence: evidence(f, best),
		Remedy:   r.RemedyFor(version),
	}
	if f.Platform.OS != "" {
		fd.Platform = f.Platform.String()
	}
	seen := map[int]bool{best.index: true}
	for _, h := range ordered[1:] {
		if len(fd.Related) == maxRelated || seen[h.index] {
			continue
		}
		seen[h.index] = true
		fd.Related = append(fd.Related, evidence(f, h))
	}
	return fd
}

// installIndex is where a hit's bytes live: the step that installed what an
// ENV line announced, or the hit's own step.
func installIndex(h hit) int {
	if h.env != "" && len(h.related) > 0 {
		return h.related[0]
	}
	return h.index
}

func hitBytes(f *image.Facts, h hit) int64 { return f.LayerSize(installIndex(h)) }

func where(f *image.Facts, h hit) string {
	i := installIndex(h)
	if i < 0 {
		return ""
	}
	s := fmt.Sprintf(" (history #%d", i)
	if h.env != "" && i != h.index {
		s = fmt.Sprintf(" (installed by history #%d", i)
	}
	if n := f.LayerSize(i); n > 0 {
		s += ", " + HumanBytes(n) + " layer"
	}
	return s + ")"
}

func evidence(f *image.Facts, h hit) Evidence {
	var e Evidence
	i := installIndex(h)
	if i >= 0 && i < len(f.History) {
		e.HistoryIndex = &i
		needle := h.needle
		if i != h.index {
			needle = ""
		}
		e.Line = shorten(f.History[i].CreatedBy, needle, 160)
		e.LayerBytes = f.LayerSize(i)
	}
	if h.env != "" {
		e.Env = shorten(h.env, "", 160)
	}
	return e
}

func sizeFindings(b v1alpha1.SizeBudget, sel selection, f *image.Facts, action Action) []Finding {
	var out []Finding
	if b.MaxCompressed != nil && sel.rules[RuleSizeCompressed] {
		limit := b.MaxCompressed.Value()
		if limit > 0 && f.CompressedSize > limit {
			r := ruleByID(RuleSizeCompressed)
			out = append(out, Finding{Rule: r.ID, Action: action, Remedy: r.Remedy,
				Message:  fmt.Sprintf("%s: %s compressed, budget %s", r.Title, HumanBytes(f.CompressedSize), b.MaxCompressed.String()),
				Evidence: Evidence{Measured: f.CompressedSize, Limit: limit}})
		}
	}
	if b.MaxLayers != nil && sel.rules[RuleSizeLayers] && len(f.Layers) > int(*b.MaxLayers) {
		r := ruleByID(RuleSizeLayers)
		out = append(out, Finding{Rule: r.ID, Action: action, Remedy: r.Remedy,
			Message:  fmt.Sprintf("%s: %d layers, budget %d", r.Title, len(f.Layers), *b.MaxLayers),
			Evidence: Evidence{Measured: int64(len(f.Layers)), Limit: int64(*b.MaxLayers)}})
	}
	for i := range out {
		if f.Platform.OS != "" {
			out[i].Platform = f.Platform.String()
		}
	}
	return out
}

// bloat sums the compressed size of the layers the hits point at, each
// layer once.
func bloat(f *image.Facts, hits []hit) *Bloat {
	b := &Bloat{TotalBytes: f.CompressedSize, Known: f.HistoryMapped}
	if !f.HistoryMapped {
		return b
	}
	layers := map[int]bool{}
	for _, h := range hits {
		for _, i := range append([]int{h.index}, h.related...) {
			if i >= 0 && i < len(f.History) && f.History[i].Layer >= 0 {
				layers[f.History[i].Layer] = true
			}
		}
	}
	for l := range layers {
		if l < len(f.Layers) {
			b.ToolchainBytes += f.Layers[l].Size
		}
	}
	if b.TotalBytes > 0 {
		b.Percent = 100 * float64(b.ToolchainBytes) / float64(b.TotalBytes)
	}
	return b
}
