package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"slimgate.dev/slimgate/pkg/egress"
	"slimgate.dev/slimgate/pkg/image"
)

// Inspector fetches the facts of an image. Implementations honour the
// context's deadline in every network call.
type Inspector interface {
	Inspect(ctx context.Context, req Request) (*Inspection, error)
}

// Request asks for the facts of one image reference.
type Request struct {
	// Reference is the image as written in a workload or on the command line.
	Reference string
	// Platforms lists "os/arch[/variant]" to judge in a multi-platform
	// image. Empty: every linux platform in the index (capped).
	Platforms []string
	// Keychain supplies credentials; nil means anonymous.
	Keychain authn.Keychain
	// CredentialScope identifies the credential set Keychain stands for (for
	// example namespace plus pull-secret names). Authenticated state is never
	// shared between different scopes. Empty for anonymous.
	CredentialScope string
	// Egress restricts which registries and addresses may be contacted.
	Egress EgressRules
	// Revalidate asks the registry again what a tag names (a manifest
	// HEAD) instead of trusting a resolution remembered for TagTTL; the
	// facts of a digest already cached are still reused. The webhook sets
	// it for Pod CREATE, the moment closest to the kubelet's pull. It has
	// no effect on digest references, whose content cannot change.
	Revalidate bool
	// Pace, when set, is called before every request to the registry
	// (host as in the reference) and may wait: background work (the fleet
	// scan) rate-limits its registry requests with it. An error ends the
	// inspection as a timeout. Cached answers make no request and never
	// call it.
	Pace func(ctx context.Context, host string) error
	// Parsed, when set, is Reference as name.ParseReference reads it (after
	// trimming spaces): a caller that parsed it already (the webhook, once
	// per review) spares Inspect a second parse.
	Parsed name.Reference
}

// EgressRules is the egress guard applied to one request (see package
// egress).
type EgressRules = egress.Rules

// Inspection is what was learned about one reference.
type Inspection struct {
	// Reference is the normalised reference.
	Reference string
	// Digest is the digest the reference resolved to (index or manifest).
	Digest string
	// Images holds one entry per judged platform.
	Images []*image.Facts
	// Notes are remarks on how the facts were obtained that a reader of the
	// verdict should know (e.g. sizes that are not registry sizes).
	Notes []string
}

// Reason classifies why an image could not be inspected, and so (Invalid)
// whose failure it is.
type Reason string

// Reasons an inspection fails.
const (
	ReasonEgressRefused Reason = "EgressRefused"
	ReasonUnauthorized  Reason = "Unauthorized"
	ReasonNotFound      Reason = "NotFound"
	ReasonTimeout       Reason = "Timeout"
	ReasonTooLarge      Reason = "TooLarge"
	ReasonInvalid       Reason = "InvalidImage"
	ReasonUnavailable   Reason = "RegistryUnavailable"
	ReasonRateLimited   Reason = "RateLimited"
	ReasonBadReference  Reason = "BadReference"
	ReasonCredentials   Reason = "CredentialsUnavailable"
)

// Reasons lists every Reason: first those Invalid, then the availability
// failures.
func Reasons() []Reason {
	return []Reason{
		ReasonInvalid, ReasonTooLarge, ReasonNotFound, ReasonBadReference, ReasonEgressRefused,
		ReasonTimeout, ReasonUnavailable, ReasonRateLimited, ReasonUnauthorized, ReasonCredentials,
	}
}

// Invalid reports whether a failure for r is the doing of the image's
// author, or of whoever named the image, rather than a failure of the
// registry, the network or slimgate's own configuration. An invalid image
// is a violation (rule inspection.invalid) judged by the policy's mode
// like any finding; the other failures are availability failures
// (inspection.failed), which a policy's onInspectionError decides. The
// one table of the two classes:
//
//	reason               class         because
//	InvalidImage         invalid       the content the author pushed is malformed: JSON, schema 1, a media
//	                                   type or digest algorithm slimgate does not read, a digest that does
//	                                   not match, a nested index, an index entry the registry lacks
//	TooLarge             invalid       the author's content is over the caps: manifest, index or config
//	                                   bytes, layers, history, env, label, index or platform entries
//	NotFound             invalid       the tag, repository or platform named does not exist: admitting it
//	                                   would let the image be pushed after admission for the kubelet's
//	                                   next pull attempt, unjudged
//	BadReference         invalid       the workload names an image that cannot be parsed
//	EgressRefused        invalid       the workload names a registry the policy does not let slimgate
//	                                   read (registries.allow, private networks): admitting it would let
//	                                   any image in by its host
//	Timeout              availability  no answer within the budget (the admission deadline)
//	RegistryUnavailable  availability  DNS, connection, TLS or 5xx failures, an open circuit breaker
//	RateLimited          availability  429 with a Retry-After that does not fit in the budget
//	Unauthorized         availability  the registry refuses slimgate's credentials: a private image it
//	                                   has no pull secret for (pullSecretAuth off, a kubelet credential
//	                                   provider) is slimgate's configuration to fix, not the image's
//	                                   doing. Docker Hub answers 401 for repositories that do not exist,
//	                                   so there an unknown repository is this reason: onInspectionError
//	                                   Deny closes that gap
//	CredentialsUnavailable
//	                     availability  the keychain could not produce credentials for the registry: a
//	                                   cloud provider's token endpoint failed, timed out or refused
//	                                   slimgate's identity (package cloudauth)
//
// An unknown Reason is an availability failure.
func (r Reason) Invalid() bool {
	switch r {
	case ReasonInvalid, ReasonTooLarge, ReasonNotFound, ReasonBadReference, ReasonEgressRefused:
		return true
	}
	return false
}

// InspectionError is the distinct "could not inspect" outcome: the image was
// not judged, for Reason. Callers apply the policy's onInspectionError.
type InspectionError struct {
	Reference string
	Reason    Reason
	Err       error
}

// Error implements error.
func (e *InspectionError) Error() string {
	return fmt.Sprintf("cannot inspect %s (%s): %v", e.Reference, e.Reason, e.Err)
}

// Unwrap returns the underlying error.
func (e *InspectionError) Unwrap() error { return e.Err }

// AsInspectionError returns err as an *InspectionError, if it is one.
func AsInspectionError(err error) (*InspectionError, bool) {
	var ie *InspectionError
	ok := errors.As(err, &ie)
	return ie, ok
}
