package admission

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/policy"
)

// MaxWarning is the longest admission warning slimgate returns; the API
// server truncates longer ones.
const MaxWarning = 120

// maxFindings caps the findings listed per image and policy in a message.
const maxFindings = 3

// maxListed caps the images a denial, the warnings and an Event note speak
// of one by one; the rest are counted. The request writes the image list,
// and a Pod of thousands of containers must not get an answer many times
// its own size.
const maxListed = 20

// rank orders actions: the strictest wins.
func rank(a policy.Action) int {
	switch a {
	case policy.ActionDeny:
		return 3
	case policy.ActionWarn:
		return 2
	case policy.ActionAudit:
		return 1
	}
	return 0
}

// strictest returns the strictest action of a judgment's findings that
// no exception waives, or "" when it has none.
func (j judgment) strictest() policy.Action {
	var top policy.Action
	for _, r := range j.results {
		for _, f := range r.Findings {
			if f.Excepted == nil && rank(f.Action) > rank(top) {
				top = f.Action
			}
		}
	}
	return top
}

// unjudged is 1 when the judgment found nothing in the image itself (its
// findings, if any, are the inspection.* rules'), 0 when it did.
func (j judgment) unjudged() int {
	for _, r := range j.results {
		for _, f := range r.Findings {
			if !strings.HasPrefix(f.Rule, "inspection.") {
				return 0
			}
		}
	}
	return 1
}

// findings returns the judgment's findings with the given action that no
// exception waives, without repeats across platforms.
func (j judgment) findings(a policy.Action) []policy.Finding {
	seen := map[string]bool{}
	var out []policy.Finding
	for _, r := range j.results {
		for _, f := range r.Findings {
			key := f.Rule + "\x00" + f.Message + "\x00" + f.Evidence.Line
			if f.Action != a || f.Excepted != nil || seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, f)
		}
	}
	return out
}

// outcome is the answer to one request.
type outcome struct {
	// denied is the denial message, empty when admitted.
	denied string
	// warnings are the admission warnings.
	warnings []string
	// judgments are kept for the decisions.
	judgments []judgment
}

// decide applies "strictest wins" per image: the denial message and the
// warnings are written in the words of the policies whose action is the
// strictest for that image.
//
// What images were found to contain leads, and images that could not be
// judged follow, so that the listing cap (maxListed) never hides a
// finding behind a run of images the request kept from being judged.
func decide(js []judgment) outcome {
	js = slices.Clone(js)
	slices.SortStableFunc(js, func(a, b judgment) int { return cmp.Compare(a.unjudged(), b.unjudged()) })
	top := map[string]policy.Action{}
	for _, j := range js {
		if j.grandfathered {
			continue // recorded, never refused or warned about
		}
		if a := j.strictest(); rank(a) > rank(top[j.image.Path]) {
			top[j.image.Path] = a
		}
	}
	var denied []string
	var warnings []string
	refused, warnedMore := 0, 0
	seenWarning := map[string]bool{}
	for _, j := range js {
		a := j.strictest()
		if a == "" || a != top[j.image.Path] || j.grandfathered {
			continue
		}
		switch a {
		case policy.ActionDeny:
			if refused++; refused <= maxListed {
				denied = append(denied, explain(j, a, false)...)
			}
		case policy.ActionWarn:
			if len(warnings) == maxListed {
				warnedMore++ // past the cap, counted, not worded
				continue
			}
			for _, f := range j.findings(a) {
				w := Warning(j.policy.Name, j.image, f)
				if seenWarning[w] {
					continue
				}
				if len(warnings) == maxListed {
					warnedMore++
					break
				}
				seenWarning[w] = true
				warnings = append(warnings, w)
			}
		}
	}
	if refused > maxListed {
		denied = append(denied, fmt.Sprintf("... and %d more refused images", refused-maxListed))
	}
	if warnedMore > 0 {
		warnings = append(warnings, fmt.Sprintf("[slimgate] ... and more warnings on %d images", warnedMore))
	}
	o := outcome{warnings: warnings, judgments: js}
	if len(denied) > 0 {
		o.denied = "slimgate refused this request:\n" + strings.Join(denied, "\n")
	}
	return o
}

// explain writes the lines for one judgment's findings of action a. The
// bloat attribution, when known, leads; then each finding with its
// evidence and remedy:
//
//	[policy] container "app" image golang-app:1: toolchain layers: 171 MB of 308 MB (56%)
//	[policy] container "app" image golang-app:1 (spec.containers[0].image): ships the Go SDK [toolchain.go]
//	  evidence: history #3: RUN /bin/sh -c go build -o /app .
//	  remedy: build in one stage, copy the binary into a slim final stage
//
// A brief explanation (for Event notes, which the API caps at 1 kB) keeps
// the finding lines and only the first remedy.
func explain(j judgment, a policy.Action, brief bool) []string {
	fs := j.findings(a)
	subject := j.subject()
	var lines []string
	if b := j.bloat(); b != "" {
		lines = append(lines, subject+": "+b)
	}
	for i, f := range fs {
		if i == maxFindings {
			lines = append(lines, fmt.Sprintf("  ... and %d more findings", len(fs)-maxFindings))
			break
		}
		lines = append(lines, fmt.Sprintf("%s (%s): %s [%s]", subject, j.image.Path, f.Message, f.Rule))
		if brief {
			continue
		}
		if e := f.Evidence.Describe(f.Rule); e != "" {
			lines = append(lines, "  evidence: "+e)
		}
		if f.Remedy != "" {
			lines = append(lines, "  remedy: "+f.Remedy)
		}
	}
	if brief && len(fs) > 0 && fs[0].Remedy != "" {
		lines = append(lines, "  remedy: "+fs[0].Remedy)
	}
	return lines
}

// subject starts the lines about a judgment: `[policy] container "app" image golang-app:1`.
// A reference longer than maxShownReference is cut: the request writes it,
// and each line about the image repeats it.
func (j judgment) subject() string {
	return fmt.Sprintf("[%s] %s image %s", j.policy.Name, j.image.describe(), policy.Truncate(j.image.Reference, maxShownReference))
}

// maxShownReference caps an image reference as messages show it.
const maxShownReference = 256

// bloat describes how much of the image its toolchain layers take, or ""
// when no bytes could be attributed. Of several platforms, the one with
// the most toolchain bytes speaks.
func (j judgment) bloat() string {
	var top *policy.Bloat
	for _, r := range j.results {
		if b := r.Bloat; b != nil && b.Known && b.ToolchainBytes > 0 && (top == nil || b.ToolchainBytes > top.ToolchainBytes) {
			top = b
		}
	}
	if top == nil {
		return ""
	}
	return top.String()
}

// Warning formats one short admission warning:
// `[policy] container "app": golang-app:1 ships the Go SDK (toolchain.go)`.
// A warning too long for MaxWarning gives up the reference's bytes first
// (down to its first 24), so that the message and the rule id stay.
func Warning(policyName string, img Image, f policy.Finding) string {
	format := func(ref string) string {
		return fmt.Sprintf("[%s] %s: %s %s (%s)", policyName, img.describe(), ref, f.Message, f.Rule)
	}
	w := format(img.Reference)
	if over := len(w) - (MaxWarning - 1); over > 0 && len(img.Reference) > 24 {
		w = format(policy.Truncate(img.Reference, max(24, len(img.Reference)-over-len("…"))))
	}
	return policy.Truncate(w, MaxWarning-1)
}

// decisions turns the judgments into one decision per policy; their
// Events regard st's verified owner when there is one.
func (o outcome) decisions(w *Workload, st standing) []events.Decision {
	action := events.ActionAdmit
	if o.denied != "" {
		action = events.ActionDeny
	}
	type acc struct {
		p         *v1alpha1.SlimImagePolicy
		top       policy.Action
		failed    bool
		excepted  bool
		kept      bool     // some judgment grandfathered
		lines     []string // about the judgments judged on their own
		inherited []string // about the grandfathered ones
		listed    int      // judgments in lines; the rest are counted
		images    imageNotes
	}
	var order []string
	byPolicy := map[string]*acc{}
	for _, j := range o.judgments {
		a := byPolicy[j.policy.Name]
		if a == nil {
			a = &acc{p: j.policy}
			byPolicy[j.policy.Name] = a
			order = append(order, j.policy.Name)
		}
		s := j.strictest()
		if rank(s) > rank(a.top) && !j.grandfathered {
			a.top = s
		}
		a.kept = a.kept || j.grandfathered
		waived := s == "" && j.failure == nil && len(j.excepted()) > 0
		if s == "" && j.failure == nil && !waived {
			continue
		}
		a.failed = a.failed || (s == "" && j.failure != nil)
		a.excepted = a.excepted || waived
		a.listed++
		reason := reasonOf(s)
		switch {
		case j.grandfathered:
			reason = events.ReasonGrandfathered
		case waived:
			reason = events.ReasonExcepted
		}
		listed, kept := a.listed <= maxListed, a.images.add(j.image.Reference, reason)
		if !listed && !kept {
			continue
		}
		var lines []string
		switch {
		case s != "":
			lines = explain(j, s, true)
		case waived:
			lines = waivedLines(j)
		default:
			f := policy.Failure{Reason: j.failure.reason, Detail: j.failure.detail}
			lines = []string{fmt.Sprintf("%s: %s; admitted because onInspectionError is %s",
				j.subject(), f, j.policy.Spec.OnInspectionError)}
		}
		switch {
		case listed && j.grandfathered:
			a.inherited = append(a.inherited, lines...)
		case listed:
			a.lines = append(a.lines, lines...)
		}
		if kept {
			a.images.by[j.image.Reference].lines = append(a.images.by[j.image.Reference].lines, lines...)
		}
	}
	var out []events.Decision
	for _, name := range order {
		a := byPolicy[name]
		inherit := ""
		if a.kept {
			inherit = st.inheritNote(w)
			a.lines = append(append(a.lines, inherit), a.inherited...)
		}
		if a.listed > maxListed {
			a.lines = append(a.lines, fmt.Sprintf("... and %d more images", a.listed-maxListed))
		}
		d := events.Decision{Object: w.Object, Kind: w.Kind, Policy: a.p, Verdict: string(policy.VerdictAllow),
			Action: action, Note: strings.Join(a.lines, "\n"), Images: a.images.notes(inherit), VerifiedOwner: st.verified}
		switch {
		case a.top != "":
			d.Reason = reasonOf(a.top)
		case a.kept:
			d.Reason, d.Verdict = events.ReasonGrandfathered, events.VerdictGrandfathered
		case a.failed:
			d.Reason = events.ReasonInspectionFailed
		case a.excepted:
			d.Reason = events.ReasonExcepted
		}
		if a.top == policy.ActionDeny {
			d.Verdict = string(policy.VerdictDeny)
		}
		out = append(out, d)
	}
	return out
}

// reasonOf is the Event reason of a judgment whose strictest action is a:
// for no action, an image that could not be inspected.
func reasonOf(a policy.Action) string {
	switch a {
	case policy.ActionDeny:
		return events.ReasonRejected
	case policy.ActionWarn:
		return events.ReasonWarned
	case policy.ActionAudit:
		return events.ReasonAudited
	default:
		return events.ReasonInspectionFailed
	}
}

// imageNotes gathers what one policy found in each image reference, in
// the order first seen: the strictest reason over the image's places, and
// the lines of its first maxFindings places.
type imageNotes struct {
	order []string
	by    map[string]*imageNote
}

type imageNote struct {
	reason       string
	lines        []string
	places, more int
}

// add counts one more place of ref, judged with reason, and reports
// whether that place's lines are to be kept.
func (n *imageNotes) add(ref, reason string) bool {
	if n.by == nil {
		n.by = map[string]*imageNote{}
	}
	im := n.by[ref]
	if im == nil {
		im = &imageNote{reason: reason}
		n.by[ref] = im
		n.order = append(n.order, ref)
	}
	if reasonRank(reason) > reasonRank(im.reason) {
		im.reason = reason
	}
	if im.places++; im.places > maxFindings {
		im.more++
		return false
	}
	return true
}

// notes returns the notes of the images in the order first seen; those of
// grandfathered images start with inherited.
func (n *imageNotes) notes(inherited string) []events.ImageNote {
	out := make([]events.ImageNote, 0, len(n.order))
	for _, ref := range n.order {
		im := n.by[ref]
		lines := im.lines
		if im.reason == events.ReasonGrandfathered {
			lines = append([]string{inherited}, lines...)
		}
		if im.more > 0 {
			lines = append(lines, fmt.Sprintf("... and %d more places", im.more))
		}
		out = append(out, events.ImageNote{Image: ref, Reason: im.reason, Note: strings.Join(lines, "\n")})
	}
	return out
}

// reasonRank orders Event reasons as rank orders actions; an image judged
// on its own in one place and grandfathered (or excepted) in another is
// recorded as judged.
func reasonRank(reason string) int {
	switch reason {
	case events.ReasonRejected:
		return rank(policy.ActionDeny)
	case events.ReasonWarned:
		return rank(policy.ActionWarn)
	case events.ReasonAudited:
		return rank(policy.ActionAudit)
	}
	return 0
}
