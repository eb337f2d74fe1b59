package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// PreviewStatus is what this policy would deny in Enforce mode if it
// selected every namespace the webhook reviews: the running workloads with
// an image it denies, by namespace, from the webhook's background scan.
// The preview webhooks read it to warn, before a namespace label or a
// policy change takes effect, which workloads Enforce would then deny.
type PreviewStatus struct {
	// ScanTime is when the scan this preview comes from ended.
	ScanTime metav1.Time `json:"scanTime"`

	// Rules fingerprints the spec judged, less its mode and
	// namespaceSelector: a preview speaks for policies with the same rules.
	Rules string `json:"rules"`

	// Namespaces lists the namespaces with workloads Enforce would deny,
	// sorted by name.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1000
	Namespaces []NamespacePreview `json:"namespaces,omitempty"`
}

// NamespacePreview is what a policy's Enforce would deny in one namespace.
type NamespacePreview struct {
	// Namespace names the namespace.
	Namespace string `json:"namespace"`

	// Denied counts its workloads Enforce would deny.
	Denied int32 `json:"denied"`

	// Workloads names the first of them, by kind and name (at most ten,
	// and fewer when the preview of every namespace would be too long).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Workloads []WorkloadPreview `json:"workloads,omitempty"`
}

// WorkloadPreview is one workload Enforce would deny.
type WorkloadPreview struct {
	// Kind and Name name the workload.
	Kind string `json:"kind"`
	Name string `json:"name"`

	// Rule is the rule id of its first finding.
	Rule string `json:"rule"`

	// BloatBytes is the compressed size of the toolchain layers of its
	// denied images.
	// +optional
	BloatBytes int64 `json:"bloatBytes,omitempty"`
}
