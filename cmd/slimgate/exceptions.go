package main

import (
	"fmt"
	"io"
	"time"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/capped"
	"slimgate.dev/slimgate/pkg/exception"
)

// maxExceptionsFile caps the exceptions file read.
const maxExceptionsFile = 4 << 20

// loadExceptions reads --exceptions and returns the exceptions that waive
// pol in --namespace at now, as the webhook would: of those of that
// namespace (a document without a namespace is in it, as with kubectl
// apply -n), the ones the webhook considers (exception.Select: unexpired,
// the first by name), then of those the ones that pol honours there and
// that last no longer than its maxDuration, counted from now (a file has
// no creation time).
// Each one left out is said on stderr. The namespace's labels are taken
// to be its name label only, and the images are judged outside any
// workload: an exception limited to workloads or containers waives
// nothing here.
func loadExceptions(o options, pol *v1alpha1.SlimImagePolicy, now time.Time, stderr io.Writer) ([]*exception.Exception, error) {
	if o.exceptionsFile == "" {
		return nil, nil
	}
	data, err := capped.ReadFile(o.exceptionsFile, maxExceptionsFile)
	if err != nil {
		return nil, err
	}
	loaded, err := exception.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.exceptionsFile, err)
	}
	skip := func(e *v1alpha1.SlimImageException, why string) {
		fmt.Fprintf(stderr, "slimgate check: exception %s/%s not applied: %s\n", e.Namespace, e.Name, why)
	}
	var inNamespace []*v1alpha1.SlimImageException
	for _, e := range loaded {
		if e.Namespace == "" {
			e.Namespace = o.namespace
		}
		if e.CreationTimestamp.IsZero() {
			e.CreationTimestamp.Time = now
		}
		switch {
		case e.Namespace != o.namespace:
			skip(e, "it is not in --namespace "+o.namespace)
		case exception.Expired(e, now):
			skip(e, "it expired at "+e.Spec.Expires.UTC().Format(time.RFC3339))
		case e.DeletionTimestamp != nil:
			skip(e, "it has a deletionTimestamp")
		default:
			inNamespace = append(inNamespace, e)
		}
	}
	// The webhook's pick among the namespace's exceptions, before what
	// a check outside the cluster cannot apply is left out.
	selected, left := exception.Select(inNamespace, now)
	gate := exception.NewGate(&pol.Spec)
	nsLabels := map[string]string{"kubernetes.io/metadata.name": o.namespace}
	var out []*exception.Exception
	for _, e := range selected {
		c := exception.Compile(e)
		switch {
		case len(e.Spec.Workloads) > 0 || len(e.Spec.Containers) > 0:
			skip(e, "it is limited to workloads or containers, which a check outside the cluster does not have")
		case !gate.AllowsIn(nsLabels):
			skip(e, fmt.Sprintf("policy %s does not honour exceptions in namespace %s", pol.Name, o.namespace))
		case len(gate.Honours(nsLabels, []*exception.Exception{c})) == 0:
			skip(e, fmt.Sprintf("it expires more than %s from now, the most policy %s allows (spec.exceptions.maxDuration)", gate.MaxDuration(), pol.Name))
		default:
			out = append(out, c)
		}
	}
	if left > 0 {
		fmt.Fprintf(stderr, "slimgate check: %d exceptions not applied: at most %d per namespace, the first by name\n", left, exception.MaxPerNamespace)
	}
	return out, nil
}
