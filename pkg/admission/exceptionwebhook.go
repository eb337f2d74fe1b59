package admission

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/exception"
	"slimgate.dev/slimgate/pkg/glob"
	"slimgate.dev/slimgate/pkg/policy"
)

// ExceptionValidator is the validating webhook of SlimImageExceptions
// (admission.WithValidator): it refuses one whose expires is further from
// its creation than the spec.exceptions.maxDuration of a policy it names
// that honours exceptions in its namespace (the default 90 days when it
// names none that exists), and one whose expires has passed. It checks a
// CREATE, and an UPDATE that changes the spec, so that an exception cannot
// be made to last longer by editing it; other updates (labels,
// finalizers) pass. The CRD's own rules (CEL) check the rest; a policy's
// maxDuration cannot be checked there, as CEL sees neither the policies
// nor the clock. Warnings name the policies that will not honour it.
type ExceptionValidator struct {
	// Reader reads SlimImagePolicies and Namespaces (the manager's cache).
	Reader client.Reader
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

var _ admission.Validator[*v1alpha1.SlimImageException] = (*ExceptionValidator)(nil)

// ValidateCreate implements admission.Validator.
func (v *ExceptionValidator) ValidateCreate(ctx context.Context, e *v1alpha1.SlimImageException) (admission.Warnings, error) {
	return v.validate(ctx, e)
}

// ValidateUpdate implements admission.Validator.
func (v *ExceptionValidator) ValidateUpdate(ctx context.Context, old, e *v1alpha1.SlimImageException) (admission.Warnings, error) {
	if equality.Semantic.DeepEqual(old.Spec, e.Spec) {
		return nil, nil
	}
	return v.validate(ctx, e)
}

// ValidateDelete implements admission.Validator: deleting is always fine.
func (v *ExceptionValidator) ValidateDelete(context.Context, *v1alpha1.SlimImageException) (admission.Warnings, error) {
	return nil, nil
}

func (v *ExceptionValidator) validate(ctx context.Context, e *v1alpha1.SlimImageException) (admission.Warnings, error) {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	start := e.CreationTimestamp.Time
	if start.IsZero() {
		start = now
	}
	expires := e.Spec.Expires.Time
	path := field.NewPath("spec", "expires")
	at := expires.UTC().Format(time.RFC3339)
	if !expires.After(now) {
		return nil, invalid(e, field.Invalid(path, at, "is in the past: an exception must expire in the future"))
	}
	lasts := expires.Sub(start)
	if lasts > policy.MaxExceptionDuration {
		return nil, invalid(e, field.Invalid(path, at, fmt.Sprintf("is %s after the exception's creation: no policy allows more than %s (365 days)",
			days(lasts), days(policy.MaxExceptionDuration))))
	}
	var list v1alpha1.SlimImagePolicyList
	if err := v.Reader.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	nsLabels, err := namespaceLabels(ctx, v.Reader, e.Namespace)
	if err != nil {
		return nil, err
	}
	var warnings admission.Warnings
	var errs field.ErrorList
	named := 0
	for i := range list.Items {
		p := &list.Items[i]
		if !namesPolicy(e.Spec.Policies, p.Name) {
			continue
		}
		named++
		g := exception.NewGate(&p.Spec)
		switch {
		case !g.AllowsIn(nsLabels):
			warnings = append(warnings, policy.Truncate(fmt.Sprintf("policy %s does not honour exceptions in namespace %s", p.Name, e.Namespace), MaxWarning-1))
		case lasts > g.MaxDuration():
			errs = append(errs, field.Invalid(path, at, fmt.Sprintf("is %s after the exception's creation (%s), more than the %s policy %s allows (spec.exceptions.maxDuration %s)",
				days(lasts), start.UTC().Format(time.RFC3339), days(g.MaxDuration()), p.Name, g.MaxDuration())))
		}
	}
	if named == 0 {
		warnings = append(warnings, "no SlimImagePolicy of those named exists yet; the default maxDuration applies")
		if lasts > exception.DefaultMaxDuration {
			errs = append(errs, field.Invalid(path, at, fmt.Sprintf("is %s after the exception's creation, more than the default %s (90 days)",
				days(lasts), days(exception.DefaultMaxDuration))))
		}
	}
	if len(errs) > 0 {
		return warnings, invalid(e, errs...)
	}
	return warnings, nil
}

// namesPolicy reports whether spec.policies names a policy.
func namesPolicy(patterns []string, name string) bool {
	for _, p := range patterns {
		if g, err := glob.Compile(p); err == nil && g.Match(name) {
			return true
		}
	}
	return false
}

// invalid is the API error that refuses e for errs: a 422 whose message
// names each field and problem.
func invalid(e *v1alpha1.SlimImageException, errs ...*field.Error) error {
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("SlimImageException").GroupKind(), e.Name, errs)
}

// days writes a duration in days when it is a whole number of them
// ("90 days"), else as Go does ("36h0m0s").
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.Round(time.Second).String()
}
