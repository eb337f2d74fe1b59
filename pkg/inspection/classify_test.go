package inspection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

func TestClassify(t *testing.T) {
	notFound := &registry.InspectionError{Reference: "ghcr.io/org/app:1", Reason: registry.ReasonNotFound, Err: errors.New("manifest unknown")}
	refused := &registry.InspectionError{Reference: "ghcr.io/org/app:1", Reason: registry.ReasonUnavailable, Err: errors.New("connection refused")}
	slow := &registry.InspectionError{Reference: "ghcr.io/org/app:1", Reason: registry.ReasonTimeout,
		Err: fmt.Errorf("no answer from ghcr.io in time: %w", context.DeadlineExceeded)}
	cases := []struct {
		name    string
		err     error
		expired bool
		want    policy.Failure
	}{
		{"inspection error", notFound, false, policy.Failure{Reason: "NotFound", Detail: "manifest unknown", Invalid: true}},
		{"wrapped inspection error", fmt.Errorf("checking: %w", notFound), false, policy.Failure{Reason: "NotFound", Detail: "manifest unknown", Invalid: true}},
		{"our deadline passed", refused, true, policy.Failure{Reason: "Timeout", Detail: noAnswer}},
		{"our deadline passed, the image was already found invalid", notFound, true, policy.Failure{Reason: "NotFound", Detail: "manifest unknown", Invalid: true}},
		{"our deadline passed, the inspector said why", slow, true, policy.Failure{Reason: "Timeout", Detail: "no answer from ghcr.io in time: context deadline exceeded"}},
		{"a deadline below us", fmt.Errorf("dial: %w", context.DeadlineExceeded), false, policy.Failure{Reason: "Timeout", Detail: "dial: context deadline exceeded"}},
		{"anything else", errors.New("connection refused"), false, policy.Failure{Reason: "RegistryUnavailable", Detail: "connection refused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, Classify(c.err, c.expired)); diff != "" {
				t.Errorf("Classify (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEveryReasonEndToEnd takes each reason the inspector knows from an
// inspection error through Classify to the policy's result, in every mode
// and both onInspectionError settings: the image's own faults are
// inspection.invalid findings with the mode's action even when
// onInspectionError is Allow; availability failures are a note with Allow
// and an inspection.failed finding with Deny.
func TestEveryReasonEndToEnd(t *testing.T) {
	invalid := map[registry.Reason]bool{
		registry.ReasonInvalid: true, registry.ReasonTooLarge: true, registry.ReasonNotFound: true,
		registry.ReasonBadReference: true, registry.ReasonEgressRefused: true,
		registry.ReasonTimeout: false, registry.ReasonUnavailable: false, registry.ReasonRateLimited: false,
		registry.ReasonUnauthorized: false, registry.ReasonCredentials: false,
	}
	if len(registry.Reasons()) != len(invalid) {
		t.Fatalf("registry knows %d reasons, this table %d: classify the new one here", len(registry.Reasons()), len(invalid))
	}
	for _, reason := range registry.Reasons() {
		wantInvalid, ok := invalid[reason]
		if !ok {
			t.Fatalf("reason %s is not in this test's table", reason)
		}
		err := fmt.Errorf("inspecting: %w", &registry.InspectionError{Reference: "ghcr.io/org/app:1", Reason: reason, Err: errors.New("what happened")})
		f := Classify(err, false)
		if f.Invalid != wantInvalid {
			t.Errorf("%s: Invalid = %v, want %v", reason, f.Invalid, wantInvalid)
		}
		for _, onError := range []v1alpha1.InspectionErrorAction{v1alpha1.InspectionErrorAllow, v1alpha1.InspectionErrorDeny} {
			for _, mode := range []v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit} {
				res := policy.InspectionFailed(&v1alpha1.SlimImagePolicySpec{Mode: mode, OnInspectionError: onError}, "ghcr.io/org/app:1", f)
				name := fmt.Sprintf("%s/%s/%s", reason, onError, mode)
				wantRule := ""
				switch {
				case wantInvalid:
					wantRule = policy.RuleInspectionInvalid
				case onError == v1alpha1.InspectionErrorDeny:
					wantRule = policy.RuleInspectionFailed
				}
				if wantRule == "" {
					if len(res.Findings) != 0 || res.Verdict != policy.VerdictAllow || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "("+string(reason)+")") {
						t.Errorf("%s: verdict %s, findings %+v, notes %q; want admitted with a note naming the reason", name, res.Verdict, res.Findings, res.Notes)
					}
					continue
				}
				wantVerdict := policy.VerdictAllow
				if mode == v1alpha1.ModeEnforce {
					wantVerdict = policy.VerdictDeny
				}
				if len(res.Findings) != 1 || res.Findings[0].Rule != wantRule || res.Findings[0].Action != policy.ActionFor(mode) ||
					res.Findings[0].Evidence.Reason != string(reason) || res.Verdict != wantVerdict {
					t.Errorf("%s: verdict %s, findings %+v; want %s with action %s", name, res.Verdict, res.Findings, wantRule, policy.ActionFor(mode))
				}
			}
		}
	}
}
