package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// NamespaceSelector returns the selector of the namespaces a policy with
// this namespaceSelector applies to, as Compile builds it: nil selects
// every namespace, a selector that does not parse none.
func NamespaceSelector(ls *metav1.LabelSelector) labels.Selector { return namespaceSelector(ls) }
