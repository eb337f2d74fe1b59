package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ScanStatus is what the webhook's background scan found under a policy:
// the workloads running in the namespaces it selects, judged as their
// creation would be.
type ScanStatus struct {
	// LastScanTime is when the scan these figures come from ended.
	LastScanTime metav1.Time `json:"lastScanTime"`

	// WorkloadsScanned counts the workloads in the namespaces the policy
	// selects.
	WorkloadsScanned int32 `json:"workloadsScanned"`

	// WorkloadsInViolation counts those running an image the policy finds
	// something in (its mode decides whether that would be denied, warned
	// about or audited).
	WorkloadsInViolation int32 `json:"workloadsInViolation"`

	// NamespacesAffected counts the namespaces with a workload in
	// violation.
	NamespacesAffected int32 `json:"namespacesAffected"`

	// TopNamespaces lists the namespaces with the most workloads in
	// violation, the most first (at most ten).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	TopNamespaces []NamespaceViolations `json:"topNamespaces,omitempty"`
}

// NamespaceViolations counts the workloads in violation in one namespace.
type NamespaceViolations struct {
	// Namespace names the namespace.
	Namespace string `json:"namespace"`
	// Workloads counts its workloads in violation.
	Workloads int32 `json:"workloads"`
}
