package policy

import (
	"fmt"
	"strings"
	"time"
)

// Action is what a finding does to an admission request.
type Action string

const (
	// ActionDeny rejects the image (policy mode Enforce).
	ActionDeny Action = "deny"
	// ActionWarn admits it with a warning (policy mode Warn).
	ActionWarn Action = "warn"
	// ActionAudit admits it silently and records an Event (mode Audit).
	ActionAudit Action = "audit"
)

// Verdict is the outcome for one image.
type Verdict string

const (
	// VerdictAllow admits the image.
	VerdictAllow Verdict = "allow"
	// VerdictDeny rejects the image.
	VerdictDeny Verdict = "deny"
)

// Finding is one rule broken by one image, with its evidence and remedy.
type Finding struct {
	// Rule is the stable id of the rule, e.g. "toolchain.go".
	Rule string `json:"rule"`
	// Action is what the policy's mode makes of it.
	Action Action `json:"action"`
	// Message is one line saying what was found.
	Message string `json:"message"`
	// Evidence is where it was found.
	Evidence Evidence `json:"evidence"`
	// Remedy says what to do instead.
	Remedy string `json:"remedy"`
	// Platform is the os/arch of the image the finding was made on.
	Platform string `json:"platform,omitempty"`
	// Related is further evidence for the same rule (other steps that
	// matched), strongest first; at most a few entries.
	Related []Evidence `json:"related,omitempty"`
	// Excepted, when set, is the SlimImageException that waives the
	// finding: it no longer counts towards the verdict.
	Excepted *Waiver `json:"excepted,omitempty"`
}

// Waiver names the SlimImageException that waives a finding.
type Waiver struct {
	// Exception is the exception's name.
	Exception string `json:"exception"`
	// Namespace is its namespace.
	Namespace string `json:"namespace,omitempty"`
	// Reason is the reason it gives.
	Reason string `json:"reason"`
	// Expires is when it stops applying.
	Expires time.Time `json:"expires"`
}

// Waives words the waiver of rules in one line, the same in Events,
// reports and scans, e.g. "toolchain.go waived by SlimImageException
// ci-runner until 2025-07-01T00:00:00Z: the runner builds code".
func (w *Waiver) Waives(rules []string) string {
	return fmt.Sprintf("%s waived by SlimImageException %s until %s: %s", strings.Join(rules, ", "),
		w.Exception, w.Expires.UTC().Format(time.RFC3339), Truncate(w.Reason, 256))
}

// Evidence points at what triggered a finding. Only the fields that apply
// are set.
type Evidence struct {
	// HistoryIndex is the position of the history entry, from 0.
	HistoryIndex *int `json:"historyIndex,omitempty"`
	// Line is the history entry's created_by (possibly shortened).
	Line string `json:"line,omitempty"`
	// Env is the KEY=VALUE environment entry.
	Env string `json:"env,omitempty"`
	// Label is the key=value label.
	Label string `json:"label,omitempty"`
	// LayerBytes is the compressed size of the layer the step added.
	LayerBytes int64 `json:"layerBytes,omitempty"`
	// Measured is the measured figure for a budget (bytes or layers).
	Measured int64 `json:"measured,omitempty"`
	// Limit is the budget it was compared with.
	Limit int64 `json:"limit,omitempty"`
	// Reason explains an inspection failure.
	Reason string `json:"reason,omitempty"`
}

// Size is an image's size as its manifest declares it.
type Size struct {
	// Compressed is the sum of the compressed layer sizes in bytes.
	Compressed int64 `json:"compressed"`
	// Layers is the number of layers.
	Layers int `json:"layers"`
}

// Bloat attributes bytes to the layers that installed or ran toolchains.
type Bloat struct {
	// ToolchainBytes is the compressed size of those layers.
	ToolchainBytes int64 `json:"toolchainBytes"`
	// TotalBytes is the image's compressed size.
	TotalBytes int64 `json:"totalBytes"`
	// Percent is ToolchainBytes as a share of TotalBytes, 0..100.
	Percent float64 `json:"percent"`
	// Known is false when history could not be paired with layers, so the
	// attribution is not available.
	Known bool `json:"known"`
}

// Result is the decision for one image (one platform) under one policy.
type Result struct {
	// Image is the reference judged.
	Image string `json:"image"`
	// Digest is the manifest digest judged.
	Digest string `json:"digest,omitempty"`
	// IndexDigest is the digest of the multi-platform index the manifest
	// was picked from, when there was one.
	IndexDigest string `json:"indexDigest,omitempty"`
	// Platform is the os/arch judged.
	Platform string `json:"platform,omitempty"`
	// Verdict is deny when any finding's action is deny.
	Verdict Verdict `json:"verdict"`
	// Findings lists every rule broken.
	Findings []Finding `json:"findings"`
	// Notes are informational remarks (e.g. "image has no history") that
	// never change the verdict.
	Notes []string `json:"notes,omitempty"`
	// Size is the image's size from its manifest.
	Size Size `json:"size"`
	// Bloat attributes the size to toolchain layers, when any were found.
	Bloat *Bloat `json:"bloat,omitempty"`
}
