package policy

// TEMPORARY: signatures pinned for the other packages; the policy engine
// replaces this file.

import (
	"errors"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
)

// Evaluate judges one image's facts under one policy spec.
func Evaluate(spec *v1alpha1.SlimImagePolicySpec, f *image.Facts) Result {
	return Result{Image: f.Reference, Digest: f.Digest, Verdict: VerdictAllow}
}

// InspectionFailed is the result for an image that could not be inspected:
// with onInspectionError Deny it carries an "inspection.failed" finding whose
// action follows the mode; with Allow only a note.
func InspectionFailed(spec *v1alpha1.SlimImagePolicySpec, ref, reason, detail string) Result {
	return Result{Image: ref, Verdict: VerdictAllow}
}

// Load parses a SlimImagePolicy YAML or JSON document strictly, applies
// defaults and validates it.
func Load(data []byte) (*v1alpha1.SlimImagePolicy, error) { return nil, errors.New("not yet") }

// Default returns the built-in default policy.
func Default() *v1alpha1.SlimImagePolicy { return nil }

// ActionFor maps a policy mode to the action of its findings.
func ActionFor(m v1alpha1.Mode) Action { return ActionDeny }
