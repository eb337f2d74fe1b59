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
// pol in --namespace at now, as the webhook would: those of that
// namespace (a document without a namespace is in it, as with kubectl
// apply -n), unexpired, that pol honours there and that last no longer
// than its maxDuration, counted from now (a file has no creation time).
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
	gate := exception.NewGate(&pol.Spec)
	nsLabels := map[string]string{"kubernetes.io/metadata.name": o.namespace}
	var out []*exception.Exception
	for _, e := range loaded {
		if e.Namespace == "" {
			e.Namespace = o.namespace
		}
		if e.CreationTimestamp.IsZero() {
			e.CreationTimestamp.Time = now
		}
		c := exception.Compile(e)
		skip := func(why string) {
			fmt.Fprintf(stderr, "slimgate check: exception %s/%s not applied: %s\n", e.Namespace, e.Name, why)
		}
		switch {
		case e.Namespace != o.namespace:
			skip("it is not in --namespace " + o.namespace)
		case len(e.Spec.Workloads) > 0 || len(e.Spec.Containers) > 0:
			skip("it is limited to workloads or containers, which a check outside the cluster does not have")
		case !c.ActiveAt(now):
			skip("it expired at " + c.Expires.UTC().Format(time.RFC3339))
		case !gate.AllowsIn(nsLabels):
			skip(fmt.Sprintf("policy %s does not honour exceptions in namespace %s", pol.Name, o.namespace))
		case len(gate.Honours(nsLabels, []*exception.Exception{c})) == 0:
			skip(fmt.Sprintf("it expires more than %s from now, the most policy %s allows (spec.exceptions.maxDuration)", gate.MaxDuration(), pol.Name))
		default:
			out = append(out, c)
		}
	}
	out, left := exception.Select(out, now)
	if left > 0 {
		fmt.Fprintf(stderr, "slimgate check: %d exceptions not applied: at most %d per namespace, the first by name\n", left, exception.MaxPerNamespace)
	}
	return out, nil
}
