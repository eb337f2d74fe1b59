package preview

import (
	"context"
	"errors"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
)

// Publisher judges every workload under each policy as if it were in
// Enforce mode and selected every namespace, and writes each policy's
// status.preview. The background scan runs it after each of its scans,
// on the replica that scans.
type Publisher struct {
	// Client lists the policies and writes their status (the manager's).
	Client client.Client
	// Lister reads the namespaces and workloads (the manager's cache).
	Lister fleet.Lister
	// Excluded are the namespaces the webhook never reviews.
	Excluded []string

	scanner fleet.Scanner
	now     func() metav1.Time
}

// NewPublisher returns a Publisher judging with the engine configured by
// judging (its Inspector should be the background scan's, sharing the
// registry cache); judging.Reader is replaced by one that shows the
// policies in Enforce mode selecting every namespace.
func NewPublisher(c client.Client, lister fleet.Lister, judging admission.Options, excluded []string) (*Publisher, error) {
	judging.Reader = everywhere{Reader: c}
	judging.Recorder, judging.Reviews = nil, nil
	h, err := admission.NewHandler(judging)
	if err != nil {
		return nil, err
	}
	return &Publisher{Client: c, Lister: lister, Excluded: excluded,
		scanner: fleet.Scanner{Lister: lister, Judge: h}, now: metav1.Now}, nil
}

// Publish scans and writes the previews.
func (p *Publisher) Publish(ctx context.Context) error {
	all, err := p.Lister.Namespaces(ctx)
	if err != nil {
		return err
	}
	namespaces := slices.DeleteFunc(all, func(ns string) bool { return slices.Contains(p.Excluded, ns) })
	slices.Sort(namespaces) // the bounds keep the first ones
	scanned, err := p.scanner.Scan(ctx, namespaces)
	if err != nil {
		return fmt.Errorf("preview scan: %w", err)
	}
	results := scanned.Workloads
	at := p.now()
	var list v1alpha1.SlimImagePolicyList
	if err := p.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("listing policies: %w", err)
	}
	var errs []error
	for i := range list.Items {
		pol := &list.Items[i]
		orig := pol.DeepCopy()
		pol.Status.Preview = Build(results, pol.Name, Fingerprint(&pol.Spec), at)
		if err := p.Client.Status().Patch(ctx, pol, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("preview of policy %s: %w", pol.Name, err))
		}
	}
	return errors.Join(errs...)
}

// everywhere is a client.Reader that shows each SlimImagePolicy in
// Enforce mode, selecting every namespace.
type everywhere struct {
	client.Reader
}

// List implements client.Reader.
func (r everywhere) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.Reader.List(ctx, list, opts...); err != nil {
		return err
	}
	if l, ok := list.(*v1alpha1.SlimImagePolicyList); ok {
		for i := range l.Items {
			l.Items[i].Spec.Mode = v1alpha1.ModeEnforce
			l.Items[i].Spec.NamespaceSelector = &metav1.LabelSelector{}
		}
	}
	return nil
}
