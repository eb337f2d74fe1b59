package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

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
// the built-in default policy. It compiles the spec on every call: callers
// that judge many images compile once (Compile) and call
// (*Compiled).Evaluate.
func Evaluate(spec *v1alpha1.SlimImagePolicySpec, f *image.Facts) Result {
	c, _ := Compile(spec) // an invalid spec is applied as far as it goes; the notes say what was ignored
	return c.Evaluate(f)
}

// Evaluate judges one image's facts under the compiled policy.
func (c *Compiled) Evaluate(f *image.Facts) Result {
	if f == nil {
		return Result{Verdict: VerdictAllow, Findings: []Finding{}, Notes: []string{"no image facts: not judged"}}
	}
	res := Result{
		Image:    f.Reference,
		Digest:   f.Digest,
		Findings: []Finding{},
		Size:     Size{Compressed: f.CompressedSize, Layers: len(f.Layers)},
		Notes:    slices.Clone(c.notes),
	}
	if f.Platform.OS != "" || f.Platform.Architecture != "" {
		res.Platform = f.Platform.String()
	}
	action, sel := c.action, c.sel

	an := analyze(f)
	res.Notes = append(res.Notes, an.notes...)
	byRule := map[string][]hit{}
	for _, h := range an.hits {
		if sel.rules[h.rule] {
			byRule[h.rule] = append(byRule[h.rule], h)
		}
	}
	var attributed []hit
	for _, r := range catalog() {
		hits := byRule[r.ID]
		if len(hits) == 0 {
			continue
		}
		res.Findings = append(res.Findings, hitFinding(r, hits, f, action, an.versions[r.version]))
		attributed = append(attributed, hits...)
	}
	res.Findings = append(res.Findings, sizeFindings(c.spec.SizeBudget, sel, f, action)...)
	if len(attributed) > 0 {
		res.Bloat = bloat(f, attributed)
	}
	if !f.HistoryMapped && len(f.History) > 0 && len(f.Layers) > 0 {
		res.Notes = append(res.Notes, "history entries do not pair one-to-one with layers: bytes are not attributed to steps")
	}
	res.Verdict = verdict(res.Findings)
	return res
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
			r, _ := ruleByID(RuleSizeCompressed)
			out = append(out, Finding{Rule: r.ID, Action: action, Remedy: r.Remedy,
				Message:  fmt.Sprintf("%s: %s compressed, budget %s", r.Title, HumanBytes(f.CompressedSize), b.MaxCompressed.String()),
				Evidence: Evidence{Measured: f.CompressedSize, Limit: limit}})
		}
	}
	if b.MaxLayers != nil && sel.rules[RuleSizeLayers] && len(f.Layers) > int(*b.MaxLayers) {
		r, _ := ruleByID(RuleSizeLayers)
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

// String formats the attribution, e.g.
// "toolchain layers: 171 MB of 308 MB (56%)".
func (b Bloat) String() string {
	if b.TotalBytes == 0 {
		return "toolchain layers: sizes unknown"
	}
	if !b.Known {
		return fmt.Sprintf("toolchain layers: unknown of %s (history not paired with layers)", HumanBytes(b.TotalBytes))
	}
	return fmt.Sprintf("toolchain layers: %s of %s (%.0f%%)", HumanBytes(b.ToolchainBytes), HumanBytes(b.TotalBytes), b.Percent)
}

// Summary is a one-line account of a result, e.g.
// "deny golang:1.24: toolchain.cc, toolchain.go; toolchain layers: 171 MB of 308 MB (56%)".
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Verdict, r.Image)
	if r.Platform != "" {
		fmt.Fprintf(&b, " (%s)", r.Platform)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, ": no findings; %s in %d layers", HumanBytes(r.Size.Compressed), r.Size.Layers)
		return b.String()
	}
	ids := make([]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		ids = append(ids, f.Rule)
	}
	fmt.Fprintf(&b, ": %s", strings.Join(ids, ", "))
	if r.Bloat != nil {
		fmt.Fprintf(&b, "; %s", r.Bloat)
	}
	return b.String()
}

// HumanBytes formats a byte count in decimal units (1 MB = 1,000,000
// bytes): "812 MB", "79.0 MB", "4.2 kB", "32 B".
func HumanBytes(n int64) string {
	const unit = 1000
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	units := []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	i := -1
	for (v >= unit || v <= -unit) && i < len(units)-1 {
		v /= unit
		i++
	}
	if v >= 100 || v <= -100 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// InspectionFailed is the result for an image that could not be inspected:
// with onInspectionError Deny it carries an "inspection.failed" finding whose
// action follows the mode; with Allow only a note.
func InspectionFailed(spec *v1alpha1.SlimImagePolicySpec, ref, reason, detail string) Result {
	if spec == nil {
		spec = &Default().Spec
	}
	why := reason
	if detail != "" {
		why = reason + ": " + detail
	}
	why = shorten(why, "", 200)
	res := Result{Image: ref, Findings: []Finding{}}
	if spec.OnInspectionError != v1alpha1.InspectionErrorDeny {
		res.Verdict = VerdictAllow
		res.Notes = []string{"not judged: the image could not be inspected (" + why + ") and onInspectionError is Allow"}
		return res
	}
	r, _ := ruleByID(RuleInspectionFailed)
	res.Findings = append(res.Findings, Finding{
		Rule:     r.ID,
		Action:   ActionFor(spec.Mode),
		Message:  shorten(r.Title+": "+why, "", 160),
		Evidence: Evidence{Reason: why},
		Remedy:   r.Remedy,
	})
	res.Verdict = verdict(res.Findings)
	return res
}

// shorten collapses whitespace and, when s is longer than limit, keeps a
// window around the first whole-word occurrence of needle (or the start),
// marking cuts with "...".
func shorten(s, needle string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if limit < 8 || len(s) <= limit {
		return s
	}
	at := 0
	if needle != "" {
		if i := wordIndex(s, needle); i >= 0 {
			at = i
		}
	}
	start := max(0, at-limit/3)
	end := min(len(s), start+limit-6)
	if end == len(s) {
		start = max(0, end-(limit-6))
	}
	start, end = runeStart(s, start), runeStart(s, end)
	out := s[start:end]
	if start > 0 {
		out = "..." + out
	}
	if end < len(s) {
		out += "..."
	}
	return out
}

// wordIndex finds needle in s where it is not part of a longer word.
func wordIndex(s, needle string) int {
	isWord := func(b byte) bool {
		return b == '_' || b == '-' || b == '.' || b == '+' || (b >= '0' && b <= '9') || (b|0x20 >= 'a' && b|0x20 <= 'z')
	}
	first := -1
	for off := 0; off < len(s); {
		i := strings.Index(s[off:], needle)
		if i < 0 {
			break
		}
		i += off
		if first < 0 {
			first = i
		}
		end := i + len(needle)
		if (i == 0 || !isWord(s[i-1])) && (end == len(s) || !isWord(s[end])) {
			return i
		}
		off = i + 1
	}
	return first
}

// runeStart moves i back to the start of a UTF-8 sequence.
func runeStart(s string, i int) int {
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
