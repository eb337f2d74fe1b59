package exception

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
	"slimgate.dev/slimgate/pkg/policy"
)

// Kind is what an exception document must declare, with apiVersion
// policy.APIVersion.
const Kind = "SlimImageException"

// Limits that mirror the CRD's OpenAPI validation.
const (
	maxPolicies   = 16
	maxRules      = 64
	maxImages     = 64
	maxGlob       = 512
	maxDigests    = 64
	maxWorkloads  = 32
	maxWorkload   = 253
	maxContainers = 32
	maxContainer  = 63
	maxReason     = 512
	// maxDocuments bounds the documents of one file.
	maxDocuments = 1024
)

var digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// workloadKinds are the kinds spec.workloads may name.
var workloadKinds = []string{"Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicationController"}

// Load reads SlimImageException documents, separated by "---" (YAML) or
// one JSON document each, strictly (unknown and duplicate fields are
// errors), and validates each as the CRD does. Every problem is
// reported at once, each naming its document and field path.
func Load(data []byte) ([]*v1alpha1.SlimImageException, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*v1alpha1.SlimImageException
	var problems []error
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading document %d: %w", i+1, err)
		}
		if isBlank(doc) {
			continue
		}
		if len(out)+len(problems) == maxDocuments {
			return nil, fmt.Errorf("more than %d exception documents", maxDocuments)
		}
		e, err := loadOne(doc)
		if err != nil {
			problems = append(problems, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		out = append(out, e)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if len(out) == 0 {
		return nil, errors.New("no exception document found")
	}
	return out, nil
}

// isBlank reports whether a document holds only comments and space.
func isBlank(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func loadOne(doc []byte) (*v1alpha1.SlimImageException, error) {
	var e v1alpha1.SlimImageException
	errs, err := policy.DecodeStrict(doc, "exception", Kind, &e)
	if err != nil {
		return nil, err
	}
	if e.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "exceptions are named in findings"))
	}
	errs = append(errs, Validate(&e.Spec)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid exception %q: %w", e.Name, errs.ToAggregate())
	}
	return &e, nil
}

// Validate checks an exception's spec as the CRD's schema and rules do,
// each problem with its field path under "spec".
func Validate(s *v1alpha1.SlimImageExceptionSpec) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	errs = append(errs, validateList(p.Child("policies"), s.Policies, 1, maxPolicies, maxGlob, checkGlob)...)
	errs = append(errs, validateList(p.Child("rules"), s.Rules, 1, maxRules, maxGlob, checkGlob)...)
	errs = append(errs, validateList(p.Child("images"), s.Images, 0, maxImages, maxGlob, checkGlob)...)
	errs = append(errs, validateList(p.Child("digests"), s.Digests, 0, maxDigests, len("sha256:")+64, func(d string) string {
		if !digestPattern.MatchString(d) {
			return `must be "sha256:" and 64 lower-case hex digits`
		}
		return ""
	})...)
	errs = append(errs, validateList(p.Child("containers"), s.Containers, 0, maxContainers, maxContainer, func(c string) string {
		return strings.Join(validation.IsDNS1123Label(c), "; ")
	})...)
	if len(s.Images) == 0 && len(s.Digests) == 0 {
		errs = append(errs, field.Required(p, "name the images (globs) or the digests the exception is for: at least one of images and digests is required"))
	}
	wp := p.Child("workloads")
	if len(s.Workloads) > maxWorkloads {
		errs = append(errs, field.TooMany(wp, len(s.Workloads), maxWorkloads))
	}
	for i, w := range s.Workloads {
		if !slices.Contains(workloadKinds, string(w.Kind)) {
			errs = append(errs, field.NotSupported(wp.Index(i).Child("kind"), w.Kind, workloadKinds))
		}
		switch np := wp.Index(i).Child("name"); {
		case w.Name == "":
			errs = append(errs, field.Required(np, ""))
		case len(w.Name) > maxWorkload:
			errs = append(errs, field.TooLong(np, w.Name, maxWorkload))
		default:
			for _, msg := range validation.IsDNS1123Subdomain(w.Name) {
				errs = append(errs, field.Invalid(np, w.Name, msg))
			}
		}
	}
	switch rp := p.Child("reason"); {
	case strings.TrimSpace(s.Reason) == "":
		errs = append(errs, field.Required(rp, "say why the exception is needed"))
	case len(s.Reason) > maxReason:
		errs = append(errs, field.TooLong(rp, "", maxReason))
	}
	if s.Expires.IsZero() {
		errs = append(errs, field.Required(p.Child("expires"), `an RFC 3339 time, e.g. "2025-07-01T00:00:00Z"`))
	}
	return errs
}

// validateList checks a list of strings: between minItems and maxItems
// entries, each of 1 to maxLen bytes that check accepts (it returns why
// not, or "").
func validateList(p *field.Path, list []string, minItems, maxItems, maxLen int, check func(string) string) field.ErrorList {
	var errs field.ErrorList
	switch {
	case len(list) < minItems:
		errs = append(errs, field.Required(p, fmt.Sprintf("at least %d entry", minItems)))
	case len(list) > maxItems:
		return append(errs, field.TooMany(p, len(list), maxItems))
	}
	for i, s := range list {
		switch ip := p.Index(i); {
		case s == "":
			errs = append(errs, field.Required(ip, ""))
		case len(s) > maxLen:
			errs = append(errs, field.TooLong(ip, "", maxLen))
		default:
			if msg := check(s); msg != "" {
				errs = append(errs, field.Invalid(ip, s, msg))
			}
		}
	}
	return errs
}

func checkGlob(s string) string {
	if _, err := glob.Compile(s); err != nil {
		return err.Error()
	}
	return ""
}
