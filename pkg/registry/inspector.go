package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"

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

// Reason classifies why an image could not be inspected.
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
)

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
