package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of SlimImagePolicy.
var GroupVersion = schema.GroupVersion{Group: "slimgate.dev", Version: "v1alpha1"}

// AddToScheme registers SlimImagePolicy, SlimImageException and their
// lists with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &SlimImagePolicy{}, &SlimImagePolicyList{})
	s.AddKnownTypes(GroupVersion, &SlimImageException{}, &SlimImageExceptionList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
