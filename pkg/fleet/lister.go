package fleet

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/pkg/admission"
)

// Lister reads what a scan judges. The webhook's implementation reads its
// informer cache, a CLI's the API server; ReaderLister serves both.
type Lister interface {
	// Namespaces lists the names of the namespaces, sorted.
	Namespaces(ctx context.Context) ([]string, error)
	// Objects lists the objects of every kind slimgate judges in a
	// namespace (admission.Kinds), Pods included, typed.
	Objects(ctx context.Context, namespace string) ([]client.Object, error)
}

// ReaderLister is a Lister over a controller-runtime client.Reader: the
// manager's cache in the webhook, a client of the API server in a CLI.
type ReaderLister struct {
	Reader client.Reader
}

// Namespaces implements Lister.
func (l ReaderLister) Namespaces(ctx context.Context) ([]string, error) {
	var list corev1.NamespaceList
	if err := l.Reader.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	out := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		if ns.DeletionTimestamp == nil {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}

// Objects implements Lister: one List per kind.
func (l ReaderLister) Objects(ctx context.Context, namespace string) ([]client.Object, error) {
	var out []client.Object
	for _, gvk := range admission.Kinds() {
		obj, err := clientgoscheme.Scheme.New(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err != nil {
			return nil, fmt.Errorf("no list type for %s: %w", gvk.Kind, err)
		}
		list := obj.(client.ObjectList)
		if err := l.Reader.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", gvk.Kind, namespace, err)
		}
		err = meta.EachListItem(list, func(o runtime.Object) error {
			if co, ok := o.(client.Object); ok {
				out = append(out, co)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
