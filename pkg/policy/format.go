package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// This file holds the one way slimgate words what it found: sizes,
// evidence, cuts and inspection failures read the same in the CLI, in a
// denial, a warning, an Event and a log line.

// cutMark marks where Truncate and shorten cut text.
const cutMark = "…"

// maxFailureDetail caps the detail of an inspection failure, so that a
// finding's message stays one short line.
const maxFailureDetail = 120

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

// HumanBytes formats a byte count in SI units (1 MB = 1,000,000 bytes):
// "812 MB", "79.0 MB", "4.2 kB", "32 B". It is the one unit slimgate
// writes sizes in (CLI, denials, warnings, Events, the demo) because
// registries and docker show compressed image sizes in these units, so a
// figure here matches the one a user holds it against. A size budget is
// the exception: it is quoted as its author wrote it ("budget 1Gi").
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

// Describe writes the evidence on one line, as the CLI and a denial both
// show it: "env GOLANG_VERSION=1.22.5; history #3: RUN /bin/sh -c ...".
// The history line comes last, since it may itself hold semicolons. What
// the finding's message of rule already says is left out: the layer's
// size, a layer count and the reason of a failure; a size budget's figures
// are given as exact byte counts, which the message rounds.
func (e Evidence) Describe(rule string) string {
	var parts []string
	if e.Env != "" {
		parts = append(parts, "env "+e.Env)
	}
	if e.Label != "" {
		parts = append(parts, "label "+e.Label)
	}
	if (e.Measured != 0 || e.Limit != 0) && rule != RuleSizeLayers {
		parts = append(parts, fmt.Sprintf("measured %d bytes, budget %d bytes", e.Measured, e.Limit))
	}
	switch {
	case e.HistoryIndex != nil && e.Line != "":
		parts = append(parts, fmt.Sprintf("history #%d: %s", *e.HistoryIndex, e.Line))
	case e.HistoryIndex != nil:
		parts = append(parts, fmt.Sprintf("history #%d", *e.HistoryIndex))
	case e.Line != "":
		parts = append(parts, e.Line)
	}
	return strings.Join(parts, "; ")
}

// Failure is why an image could not be inspected.
type Failure struct {
	// Reason classifies it with one of the inspector's reasons, e.g.
	// "NotFound" or "Timeout".
	Reason string
	// Detail says what happened, without the image reference: whoever
	// reports the failure names the image once, beside it.
	Detail string
	// Invalid is set when the image itself, or the reference naming it, is
	// at fault rather than the registry or slimgate (the inspector's
	// classification of Reason): a violation of inspection.invalid,
	// whatever onInspectionError says. Otherwise it is an availability
	// failure, inspection.failed.
	Invalid bool
}

// String is the one sentence slimgate says about a failure, wherever it
// says it: "not inspected (NotFound): manifest unknown".
func (f Failure) String() string { return "not inspected" + f.because() }

// because is the reason and the (capped) detail: " (NotFound): manifest unknown".
func (f Failure) because() string {
	s := " (" + f.Reason + ")"
	if d := shorten(f.Detail, "", maxFailureDetail); d != "" {
		s += ": " + d
	}
	return s
}

// InspectionFailed is the result for an image that could not be inspected
// (see Failure). An invalid image carries an "inspection.invalid" finding
// whose action follows the mode, whatever onInspectionError says. An
// availability failure carries an "inspection.failed" finding the same way
// when onInspectionError is Deny, and with Allow only a note saying the
// failure. A finding's message is its rule's title and the failure's
// reason and detail.
func InspectionFailed(spec *v1alpha1.SlimImagePolicySpec, ref string, f Failure) Result {
	if spec == nil {
		spec = &Default().Spec
	}
	res := Result{Image: ref, Findings: digestFindings(spec, ref, ActionFor(spec.Mode))}
	rule := RuleInspectionInvalid
	if !f.Invalid {
		rule = RuleInspectionFailed
		if spec.OnInspectionError != v1alpha1.InspectionErrorDeny {
			res.Verdict = verdict(res.Findings)
			res.Notes = []string{f.String() + "; not judged, as onInspectionError is Allow"}
			return res
		}
	}
	r := ruleByID(rule)
	res.Findings = append(res.Findings, Finding{
		Rule:     r.ID,
		Action:   ActionFor(spec.Mode),
		Message:  r.Title + f.because(),
		Evidence: Evidence{Reason: f.Reason},
		Remedy:   r.Remedy,
	})
	res.Verdict = verdict(res.Findings)
	return res
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with "…". It is the one truncation of what slimgate says: warnings,
// Event notes, evidence lines and failure details are cut by it.
func Truncate(s string, n int) string { return window(s, 0, n) }

// shorten collapses whitespace and, when s is longer than limit bytes,
// keeps a window around the first whole-word occurrence of needle (or the
// start), marking cuts as Truncate does.
func shorten(s, needle string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	at := 0
	if needle != "" {
		if i := wordIndex(s, needle); i >= 0 {
			at = i
		}
	}
	return window(s, at, limit)
}

// window keeps at most n bytes of s around byte offset at: from a third of
// n before it, or the start, or as much of the end as fits. Cuts fall on
// rune boundaries and are marked.
func window(s string, at, n int) string {
	if len(s) <= n {
		return s
	}
	mark := len(cutMark)
	if n <= mark {
		return s[:runeBefore(s, n)]
	}
	start := max(0, at-n/3)
	if start == 0 || n <= 2*mark {
		return s[:runeBefore(s, n-mark)] + cutMark
	}
	if len(s)-start <= n-mark {
		return cutMark + s[runeAfter(s, len(s)-(n-mark)):]
	}
	start = runeAfter(s, start)
	end := max(start, runeBefore(s, start+n-2*mark))
	return cutMark + s[start:end] + cutMark
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

// runeBefore moves i back to the start of the UTF-8 sequence it falls in.
func runeBefore(s string, i int) int {
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

// runeAfter moves i forward to the start of the next UTF-8 sequence.
func runeAfter(s string, i int) int {
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return i
}
