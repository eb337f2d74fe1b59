package scan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// snapshot is the client.Reader the engine judges with: the policies, the
// namespaces (their labels select policies) and their SlimImageExceptions
// read once at the start, and the API server for the rest (service
// accounts and pull secrets). The engine reads all three for every
// workload; from the API server that would be three requests each.
type snapshot struct {
	client.Reader
	// policies are the policies judged under, each with a UID and a
	// resourceVersion so that the engine compiles it once.
	policies []v1alpha1.SlimImagePolicy
	// namespaces are the namespaces scanned, by name, sorted in names.
	namespaces map[string]*corev1.Namespace
	names      []string
	// exceptions are the exceptions of each namespace scanned (none where
	// the API is missing or the caller may not read them).
	exceptions map[string][]v1alpha1.SlimImageException
	// skipped are the system namespaces -A left out.
	skipped []string
	// source says where the policies come from: "built-in", the file, or
	// "cluster".
	source string
}

// read reads the policies and namespaces (nil names: every namespace but
// the system ones).
func read(ctx context.Context, c client.Reader, names []string, o options) (*snapshot, error) {
	s := &snapshot{Reader: c, namespaces: map[string]*corev1.Namespace{}}
	if err := s.readPolicies(ctx, o); err != nil {
		return nil, err
	}
	if names == nil {
		var list corev1.NamespaceList
		if err := c.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("listing namespaces (or name one with -n): %w", err)
		}
		for i := range list.Items {
			ns := &list.Items[i]
			switch {
			case ns.DeletionTimestamp != nil:
			case isSystem(ns.Name):
				s.skipped = append(s.skipped, ns.Name)
			default:
				s.namespaces[ns.Name] = ns
				s.names = append(s.names, ns.Name)
			}
		}
	}
	for _, n := range names {
		var ns corev1.Namespace
		if err := c.Get(ctx, types.NamespacedName{Name: n}, &ns); err != nil {
			return nil, fmt.Errorf("reading namespace %s (its labels select policies): %w", n, err)
		}
		s.namespaces[n] = &ns
		s.names = append(s.names, n)
	}
	slices.Sort(s.names)
	slices.Sort(s.skipped)
	if err := s.readExceptions(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// readExceptions reads the exceptions of the namespaces scanned, which
// waive findings there as they do in reviews. A cluster without the API,
// or a namespace whose exceptions the caller may not read, has none.
func (s *snapshot) readExceptions(ctx context.Context) error {
	s.exceptions = map[string][]v1alpha1.SlimImageException{}
	for _, n := range s.names {
		var list v1alpha1.SlimImageExceptionList
		err := s.Reader.List(ctx, &list, client.InNamespace(n))
		switch {
		case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
			return nil
		case apierrors.IsForbidden(err):
			continue
		case err != nil:
			return fmt.Errorf("listing the SlimImageExceptions of %s: %w", n, err)
		}
		s.exceptions[n] = list.Items
	}
	return nil
}

// readPolicies reads --policy, the built-in policy, or with
// --cluster-policies the cluster's.
func (s *snapshot) readPolicies(ctx context.Context, o options) error {
	if !o.clusterPolicies {
		p, err := policy.ReadFile(o.policyFile)
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		if p.Name == "" {
			p.Name = "policy"
		}
		p.UID, p.ResourceVersion = types.UID("scan:"+p.Name), "1"
		s.policies, s.source = []v1alpha1.SlimImagePolicy{*p}, cmp.Or(o.policyFile, "built-in")
		return nil
	}
	var list v1alpha1.SlimImagePolicyList
	err := s.Reader.List(ctx, &list)
	switch {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		return errors.New("--cluster-policies: the cluster has no SlimImagePolicy API (slimgate is not installed); scan under the built-in policy or --policy FILE")
	case err != nil:
		return fmt.Errorf("listing SlimImagePolicies: %w", err)
	case len(list.Items) == 0:
		return errors.New("--cluster-policies: the cluster has no SlimImagePolicy; scan under the built-in policy or --policy FILE")
	}
	s.policies, s.source = list.Items, "cluster"
	return nil
}

// policyNames lists the policies' names, sorted.
func (s *snapshot) policyNames() []string {
	out := make([]string, len(s.policies))
	for i := range s.policies {
		out[i] = s.policies[i].Name
	}
	slices.Sort(out)
	return out
}

// namespaceNames lists the namespaces scanned, sorted.
func (s *snapshot) namespaceNames() []string { return s.names }

// Get implements client.Reader: the namespaces scanned from the snapshot.
func (s *snapshot) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if ns, ok := obj.(*corev1.Namespace); ok {
		if n, ok := s.namespaces[key.Name]; ok {
			n.DeepCopyInto(ns)
			return nil
		}
	}
	return s.Reader.Get(ctx, key, obj, opts...)
}

// List implements client.Reader: the policies, and the exceptions of a
// namespace scanned, from the snapshot.
func (s *snapshot) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	switch l := list.(type) {
	case *v1alpha1.SlimImagePolicyList:
		l.Items = make([]v1alpha1.SlimImagePolicy, len(s.policies))
		for i := range s.policies {
			s.policies[i].DeepCopyInto(&l.Items[i])
		}
		return nil
	case *v1alpha1.SlimImageExceptionList:
		var o client.ListOptions
		o.ApplyOptions(opts)
		if items, ok := s.exceptions[o.Namespace]; ok || slices.Contains(s.names, o.Namespace) {
			l.Items = make([]v1alpha1.SlimImageException, len(items))
			for i := range items {
				items[i].DeepCopyInto(&l.Items[i])
			}
			return nil
		}
	}
	return s.Reader.List(ctx, list, opts...)
}
