package inspection

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

func TestClassify(t *testing.T) {
	notFound := &registry.InspectionError{Reference: "ghcr.io/org/app:1", Reason: registry.ReasonNotFound, Err: errors.New("manifest unknown")}
	slow := &registry.InspectionError{Reference: "ghcr.io/org/app:1", Reason: registry.ReasonTimeout,
		Err: fmt.Errorf("no answer from ghcr.io in time: %w", context.DeadlineExceeded)}
	cases := []struct {
		name    string
		err     error
		expired bool
		want    policy.Failure
	}{
		{"inspection error", notFound, false, policy.Failure{Reason: "NotFound", Detail: "manifest unknown"}},
		{"wrapped inspection error", fmt.Errorf("checking: %w", notFound), false, policy.Failure{Reason: "NotFound", Detail: "manifest unknown"}},
		{"our deadline passed", notFound, true, policy.Failure{Reason: "Timeout", Detail: noAnswer}},
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
