package policy

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// Bounds of spec.exceptions.maxDuration, as the CRD's validation rule has
// them.
const (
	MinExceptionDuration = time.Minute
	MaxExceptionDuration = 365 * 24 * time.Hour
)

// validateExceptionRules checks spec.exceptions.
func validateExceptionRules(p *field.Path, e *v1alpha1.ExceptionRules) field.ErrorList {
	errs := validateSelector(p.Child("namespaceSelector"), e.NamespaceSelector)
	if d := e.MaxDuration; d != nil {
		if d.Duration < MinExceptionDuration || d.Duration > MaxExceptionDuration {
			errs = append(errs, field.Invalid(p.Child("maxDuration"), d.Duration.String(),
				fmt.Sprintf("must be between %s and %s (365 days)", MinExceptionDuration, MaxExceptionDuration)))
		}
	}
	return errs
}
