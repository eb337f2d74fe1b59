package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
)

// APIVersion and Kind are what a policy document must declare.
const (
	APIVersion = "slimgate.dev/v1alpha1"
	Kind       = "SlimImagePolicy"
)

//go:embed default-policy.yaml
var defaultPolicy []byte

// Default returns the built-in default policy (the one the Helm chart
// installs), freshly parsed: callers may modify it.
func Default() *v1alpha1.SlimImagePolicy {
	p, err := Load(defaultPolicy)
	if err != nil {
		// The embedded file is tested; this is a build defect.
		panic(fmt.Sprintf("built-in default policy is invalid: %v", err))
	}
	return p
}

// DefaultYAML returns the built-in default policy document.
func DefaultYAML() []byte { return bytes.Clone(defaultPolicy) }

// Load parses a SlimImagePolicy YAML or JSON document strictly (unknown and
// duplicate fields are errors), applies defaults and validates it. Every
// problem is reported at once, each naming its field path.
func Load(data []byte) (*v1alpha1.SlimImagePolicy, error) {
	var p v1alpha1.SlimImagePolicy
	errs, err := DecodeStrict(data, "policy", Kind, &p)
	if err != nil {
		return nil, err
	}
	SetDefaults(&p.Spec)
	errs = append(errs, Validate(&p.Spec)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid policy: %w", errs.ToAggregate())
	}
	return &p, nil
}

// Object is a document DecodeStrict reads: a slimgate.dev/v1alpha1 object
// that embeds metav1.TypeMeta.
type Object interface {
	GetObjectKind() schema.ObjectKind
}

// DecodeStrict decodes one YAML or JSON document of slimgate.dev/v1alpha1
// kind into out as Load does: strictly, unknown and duplicate fields being
// field errors, as are an apiVersion or kind other than APIVersion and
// kind. noun names the document in errors ("policy"). The error is set
// when the document cannot be read at all.
func DecodeStrict(data []byte, noun, kind string, out Object) (field.ErrorList, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s document is empty", noun)
	}
	if len(data) > maxDocument {
		return nil, fmt.Errorf("%s document is %d bytes, more than the %d allowed", noun, len(data), maxDocument)
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", noun, err)
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, fmt.Errorf("%s document is empty", noun)
	}
	strict, err := sigsjson.UnmarshalStrict(j, out)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", noun, err)
	}
	var errs field.ErrorList
	for _, e := range strict {
		errs = append(errs, strictError(e))
	}
	var tm metav1.TypeMeta
	if t, ok := out.GetObjectKind().(*metav1.TypeMeta); ok {
		tm = *t
	}
	switch {
	case tm.APIVersion == "":
		errs = append(errs, field.Required(field.NewPath("apiVersion"), "must be "+APIVersion))
	case tm.APIVersion != APIVersion:
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{APIVersion}))
	}
	switch {
	case tm.Kind == "":
		errs = append(errs, field.Required(field.NewPath("kind"), "must be "+kind))
	case tm.Kind != kind:
		errs = append(errs, field.NotSupported(field.NewPath("kind"), tm.Kind, []string{kind}))
	}
	return errs, nil
}

// strictError turns a strict-decoding complaint into a field error.
func strictError(e error) *field.Error {
	var fe sigsjson.FieldError
	if !errors.As(e, &fe) {
		return field.InternalError(nil, e)
	}
	detail := "unknown field"
	if strings.HasPrefix(e.Error(), "duplicate") {
		detail = "duplicate field"
	}
	return &field.Error{Type: field.ErrorTypeForbidden, Field: fe.FieldPath(), BadValue: "", Detail: detail}
}

// SetDefaults fills what a policy leaves out: mode Enforce,
// onInspectionError Allow, ephemeral containers excluded, existingWorkloads
// Keep.
func SetDefaults(spec *v1alpha1.SlimImagePolicySpec) {
	if spec == nil {
		return
	}
	if spec.Mode == "" {
		spec.Mode = v1alpha1.ModeEnforce
	}
	if spec.OnInspectionError == "" {
		spec.OnInspectionError = v1alpha1.InspectionErrorAllow
	}
	if spec.ExistingWorkloads == "" {
		spec.ExistingWorkloads = v1alpha1.ExistingWorkloadsKeep
	}
	if spec.Exclude.EphemeralContainers == nil {
		t := true
		spec.Exclude.EphemeralContainers = &t
	}
}

// Limits that mirror the CRD's OpenAPI validation.
const (
	maxDocument      = 1 << 20
	maxRuleRefs      = 64
	maxRuleRefLen    = 128
	maxExcludeImages = 256
	maxImagePattern  = 512
	maxRegistries    = 256
	maxInsecure      = 64
	maxHostLen       = 255
	maxPlatforms     = 16
	maxDurationLen   = 32
)

var platformPattern = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)

// ValidPlatform reports whether s is a platform as spec.platforms takes
// it: "os/arch" or "os/arch/variant".
func ValidPlatform(s string) bool { return platformPattern.MatchString(s) }

// Validate checks a policy spec and reports every problem with its field
// path under "spec". Empty mode, onInspectionError and existingWorkloads
// are accepted as their defaults.
func Validate(spec *v1alpha1.SlimImagePolicySpec) field.ErrorList {
	p := field.NewPath("spec")
	if spec == nil {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	switch spec.Mode {
	case "", v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), spec.Mode,
			[]v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}))
	}
	switch spec.OnInspectionError {
	case "", v1alpha1.InspectionErrorAllow, v1alpha1.InspectionErrorDeny:
	default:
		errs = append(errs, field.NotSupported(p.Child("onInspectionError"), spec.OnInspectionError,
			[]v1alpha1.InspectionErrorAction{v1alpha1.InspectionErrorAllow, v1alpha1.InspectionErrorDeny}))
	}
	switch spec.ExistingWorkloads {
	case "", v1alpha1.ExistingWorkloadsKeep, v1alpha1.ExistingWorkloadsJudge:
	default:
		errs = append(errs, field.NotSupported(p.Child("existingWorkloads"), spec.ExistingWorkloads,
			[]v1alpha1.ExistingWorkloads{v1alpha1.ExistingWorkloadsKeep, v1alpha1.ExistingWorkloadsJudge}))
	}
	errs = append(errs, validateSelector(p.Child("namespaceSelector"), spec.NamespaceSelector)...)
	det, cerrs := customRules(p.Child("toolchains", "custom"), spec.Toolchains.Custom)
	errs = append(errs, cerrs...)
	errs = append(errs, validateRuleRefs(p.Child("toolchains", "deny"), spec.Toolchains.Deny, det.rules)...)
	errs = append(errs, validateRuleRefs(p.Child("toolchains", "allow"), spec.Toolchains.Allow, det.rules)...)
	for i, a := range spec.Toolchains.Allow {
		if slices.Contains(spec.Toolchains.Deny, a) {
			errs = append(errs, field.Invalid(p.Child("toolchains", "allow").Index(i), a, "a rule cannot be both denied and allowed"))
		}
	}
	b := p.Child("sizeBudget")
	if q := spec.SizeBudget.MaxCompressed; q != nil && q.Sign() <= 0 {
		errs = append(errs, field.Invalid(b.Child("maxCompressed"), q.String(), "must be greater than zero"))
	}
	if n := spec.SizeBudget.MaxLayers; n != nil && *n < 1 {
		errs = append(errs, field.Invalid(b.Child("maxLayers"), *n, "must be at least 1"))
	}
	errs = append(errs, validatePatterns(p.Child("exclude", "images"), spec.Exclude.Images, maxExcludeImages, maxImagePattern, false)...)
	errs = append(errs, validatePatterns(p.Child("registries", "allow"), spec.Registries.Allow, maxRegistries, maxHostLen, true)...)
	ins := p.Child("registries", "insecure")
	errs = append(errs, validatePatterns(ins, spec.Registries.Insecure, maxInsecure, maxHostLen, true)...)
	for i, h := range spec.Registries.Insecure {
		if strings.ContainsAny(h, "*?[") {
			errs = append(errs, field.Invalid(ins.Index(i), h, "must be a host[:port], not a pattern"))
		}
	}
	pl := p.Child("platforms")
	if len(spec.Platforms) > maxPlatforms {
		errs = append(errs, field.TooMany(pl, len(spec.Platforms), maxPlatforms))
	}
	for i, s := range spec.Platforms {
		if !ValidPlatform(s) {
			errs = append(errs, field.Invalid(pl.Index(i), s, `must be "os/arch" or "os/arch/variant", e.g. linux/arm64/v8`))
		}
	}
	errs = append(errs, validateExceptionRules(p.Child("exceptions"), &spec.Exceptions)...)
	return errs
}

// validateSelector checks a label selector (nil is fine).
func validateSelector(p *field.Path, sel *metav1.LabelSelector) field.ErrorList {
	if sel == nil {
		return nil
	}
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, p)
	if len(errs) == 0 {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(p, sel, err.Error()))
		}
	}
	return errs
}

// validateRuleRefs checks deny/allow entries: ids or globs that name at
// least one rule of the catalog (with the policy's custom toolchains).
func validateRuleRefs(p *field.Path, refs []string, rules []Rule) field.ErrorList {
	var errs field.ErrorList
	if len(refs) > maxRuleRefs {
		errs = append(errs, field.TooMany(p, len(refs), maxRuleRefs))
	}
	for i, ref := range refs {
		ip := p.Index(i)
		if ref == "" {
			errs = append(errs, field.Required(ip, "a rule id or glob"))
			continue
		}
		if len(ref) > maxRuleRefLen {
			errs = append(errs, field.TooLong(ip, ref, maxRuleRefLen))
			continue
		}
		g, err := glob.Compile(ref)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(ip, ref, err.Error()))
		case !namesRuleOf(rules, g):
			errs = append(errs, field.NotSupported(ip, ref, ruleIDsOf(rules)))
		}
	}
	return errs
}

// validatePatterns checks image or registry host patterns.
func validatePatterns(p *field.Path, pats []string, maxItems, maxLen int, host bool) field.ErrorList {
	var errs field.ErrorList
	if len(pats) > maxItems {
		errs = append(errs, field.TooMany(p, len(pats), maxItems))
	}
	for i, s := range pats {
		ip := p.Index(i)
		switch {
		case strings.TrimSpace(s) == "":
			errs = append(errs, field.Required(ip, "a pattern"))
		case len(s) > maxLen:
			errs = append(errs, field.TooLong(ip, s, maxLen))
		case strings.ContainsAny(s, " \t\n"):
			errs = append(errs, field.Invalid(ip, s, "must not contain whitespace"))
		case strings.Contains(s, "://"):
			errs = append(errs, field.Invalid(ip, s, "must not include a scheme"))
		case host && strings.Contains(s, "/"):
			errs = append(errs, field.Invalid(ip, s, "must be a registry host[:port], without a path"))
		default:
			if err := compilePattern(s, host); err != nil {
				errs = append(errs, field.Invalid(ip, s, err.Error()))
			}
		}
	}
	return errs
}

// compilePattern checks an image or registry host pattern with the
// compiler that matching uses.
func compilePattern(s string, host bool) error {
	if host {
		_, err := glob.CompileHost(s)
		return err
	}
	_, err := glob.Compile(s)
	return err
}
