// Package v1alpha1 holds the SlimImagePolicy API: the cluster-scoped policy
// that tells slimgate which images to judge, which rules to apply and what to
// do with a violation.
//
// +kubebuilder:object:generate=true
// +groupName=slimgate.dev
package v1alpha1
