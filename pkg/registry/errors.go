package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"slimgate.dev/slimgate/pkg/egress"
)

// reasonedError carries the Reason of a failure found below Inspect.
type reasonedError struct {
	reason Reason
	err    error
}

func (e *reasonedError) Error() string { return e.err.Error() }
func (e *reasonedError) Unwrap() error { return e.err }

func reasoned(r Reason, err error) error { return &reasonedError{reason: r, err: err} }

// Reasoned marks err with the Reason an inspection fails for. The mark
// survives wrapping with %w: ReasonOf finds it, and Remote reports it as
// the InspectionError's Reason. Other sources of facts (package local)
// mark their failures with it.
func Reasoned(r Reason, err error) error { return reasoned(r, err) }

// ReasonOf returns the Reason err (or an error it wraps) was marked with
// by Reasoned, if any.
func ReasonOf(err error) (Reason, bool) {
	var re *reasonedError
	if errors.As(err, &re) {
		return re.reason, true
	}
	return "", false
}

// statusError is an unexpected HTTP status from a registry.
type statusError struct {
	method, url string
	code        int
	detail      string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("%s %s: %s", e.method, e.url, http.StatusText(e.code))
	if e.code == 0 || http.StatusText(e.code) == "" {
		msg = fmt.Sprintf("%s %s: status %d", e.method, e.url, e.code)
	}
	if e.detail != "" {
		msg += ": " + e.detail
	}
	if e.code == http.StatusUnauthorized || e.code == http.StatusForbidden {
		msg += " (credentials missing or not accepted)"
	}
	return msg
}

// countsAgainstRegistry reports whether a failure says the registry is
// unwell, as opposed to the image or the credentials being wrong.
func countsAgainstRegistry(reason Reason) bool {
	return reason == ReasonTimeout || reason == ReasonUnavailable
}

// toInspectionError classifies any fetch error.
func (r *Remote) toInspectionError(ref string, err error) *InspectionError {
	if ie, ok := AsInspectionError(err); ok {
		return ie
	}
	return &InspectionError{Reference: ref, Reason: reasonOf(err), Err: err}
}

func reasonOf(err error) Reason {
	var re *reasonedError
	var se *statusError
	var te *transport.Error
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.reason
	case errors.Is(err, egress.ErrRefused):
		// For loopback and private names ggcr's ping falls back to plain
		// HTTP once HTTPS failed, and the guard refuses the fallback: the
		// HTTPS failure, which comes first, is the reason then.
		var ue *url.Error
		if errors.As(err, &ue) && !errors.Is(ue, egress.ErrRefused) {
			return reasonOf(ue)
		}
		return ReasonEgressRefused
	case errors.Is(err, errBodyTooLarge):
		return ReasonTooLarge
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonTimeout
	case errors.As(err, &se):
		return reasonOfStatus(se.code)
	case errors.As(err, &te):
		return reasonOfStatus(te.StatusCode)
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	}
	return ReasonUnavailable
}

func reasonOfStatus(code int) Reason {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ReasonUnauthorized
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusTooManyRequests:
		return ReasonRateLimited
	}
	return ReasonUnavailable
}

// outcomeOf names a request's outcome for the requests metric.
func outcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	switch reasonOf(err) {
	case ReasonUnauthorized:
		return "unauthorized"
	case ReasonNotFound:
		return "not_found"
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonTimeout:
		return "timeout"
	case ReasonEgressRefused:
		return "refused"
	case ReasonTooLarge:
		return "too_large"
	}
	return "error"
}
