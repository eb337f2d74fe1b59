package inspection

import (
	"context"
	"errors"

	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// noAnswer is the detail of a failure whose caller ran out of time.
const noAnswer = "the registry did not answer in the time allowed"

// Classify says why an inspection failed, and whether the image is at
// fault (Failure.Invalid, registry.Reason.Invalid's table). err is the
// inspector's (non-nil) error; expired reports that the caller's own
// deadline (the admission budget, the CLI's --timeout) has passed, which
// makes an availability failure a Timeout whatever the transport reported
// on the way out. An invalid image stays invalid: what the registry served
// was judged before time ran out. The detail never repeats the reference
// or the reason: the registry's "cannot inspect REF (Reason): " is taken
// off.
func Classify(err error, expired bool) policy.Failure {
	f := classify(err)
	f.Invalid = registry.Reason(f.Reason).Invalid()
	if expired && !f.Invalid && f.Reason != string(registry.ReasonTimeout) {
		return policy.Failure{Reason: string(registry.ReasonTimeout), Detail: noAnswer}
	}
	return f
}

// classify reads the reason and detail of an inspector's error.
func classify(err error) policy.Failure {
	if ie, ok := registry.AsInspectionError(err); ok {
		f := policy.Failure{Reason: string(ie.Reason)}
		if ie.Err != nil {
			f.Detail = ie.Err.Error()
		}
		return f
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return policy.Failure{Reason: string(registry.ReasonTimeout), Detail: err.Error()}
	}
	return policy.Failure{Reason: string(registry.ReasonUnavailable), Detail: err.Error()}
}
