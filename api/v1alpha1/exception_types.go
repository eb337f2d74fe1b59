package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultExceptionMaxDuration is spec.exceptions.maxDuration when a policy
// leaves it out: 90 days.
const DefaultExceptionMaxDuration = "2160h"

// ExceptionRules is what a policy lets SlimImageExceptions do to it.
// +kubebuilder:validation:XValidation:rule="!has(self.maxDuration) || (duration(self.maxDuration) >= duration('1m') && duration(self.maxDuration) <= duration('8760h'))",message="maxDuration must be between 1m and 8760h (365 days)",fieldPath=".maxDuration"
type ExceptionRules struct {
	// Allowed lets SlimImageExceptions waive this policy's findings.
	// Default true.
	// +kubebuilder:default=true
	// +optional
	Allowed *bool `json:"allowed,omitempty"`

	// NamespaceSelector picks the namespaces whose SlimImageExceptions
	// this policy honours. Empty or absent: every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// MaxDuration is the longest an exception may last, from its creation
	// to its expires ("2160h", the default, is 90 days). A longer one is
	// refused when it is created or its expires changed, and one that is
	// longer anyway (it predates the policy) does not waive this policy.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +optional
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`
}

// WorkloadKind is a kind of object slimgate judges.
// +kubebuilder:validation:Enum=Pod;Deployment;ReplicaSet;StatefulSet;DaemonSet;Job;CronJob;ReplicationController
type WorkloadKind string

// ExceptionWorkload names a workload an exception is limited to.
type ExceptionWorkload struct {
	// Kind is the workload's kind ("Deployment").
	Kind WorkloadKind `json:"kind"`

	// Name is the workload's name, exactly. It also covers what the
	// workload creates: a Deployment's ReplicaSets and their Pods, a
	// CronJob's Jobs and their Pods, the Pods of the other controllers.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
}

// Globs are patterns in slimgate's one glob dialect: printable ASCII,
// '*' any run of characters, '?' one, '[', ']', '{', '}' and '\\' refused.
// +kubebuilder:validation:items:MinLength=1
// +kubebuilder:validation:items:MaxLength=512
// +kubebuilder:validation:items:Pattern=`^[!-Z^-z|~]+$`
type Globs []string

// SlimImageExceptionSpec says which findings an exception waives, where,
// why and until when.
// +kubebuilder:validation:XValidation:rule="(has(self.images) && size(self.images) > 0) || (has(self.digests) && size(self.digests) > 0)",message="name the images (globs) or the digests the exception is for: at least one of images and digests is required"
type SlimImageExceptionSpec struct {
	// Policies names the SlimImagePolicies whose findings are waived;
	// "*" (or any glob) for all.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Policies Globs `json:"policies"`

	// Rules names the rule ids waived ("toolchain.go"), or globs of them
	// ("toolchain.*", "*"). The inspection.* rules are never waived: an
	// image that could not be read was not judged.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Rules Globs `json:"rules"`

	// Images are globs of the image references covered
	// ("ghcr.io/org/ci-runner:*"), matched as written and normalised
	// ("golang:1" is also "docker.io/library/golang:1"). With Digests,
	// an image must match both.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Images Globs `json:"images,omitempty"`

	// Digests are the exact digests covered: the image's manifest digest,
	// or the digest of its multi-platform index. The digest judged must
	// be one of them, so a new push to the same tag is not covered.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^sha256:[a-f0-9]{64}$`
	// +kubebuilder:validation:items:MaxLength=71
	// +optional
	Digests []string `json:"digests,omitempty"`

	// Workloads, when set, limits the exception to these workloads (and
	// what they create).
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Workloads []ExceptionWorkload `json:"workloads,omitempty"`

	// Containers, when set, limits the exception to containers (or image
	// volumes) of these names.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +optional
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Containers []string `json:"containers,omitempty"`

	// Reason says why the exception is needed; it is repeated in the
	// ImageExcepted Events.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`\S`
	Reason string `json:"reason"`

	// Expires is when the exception stops applying (RFC 3339,
	// "2025-07-01T00:00:00Z"). It may not be further from the exception's
	// creation than the policies' spec.exceptions.maxDuration.
	// +kubebuilder:validation:Format=date-time
	Expires metav1.Time `json:"expires"`
}

// Condition types of a SlimImageException's status.
const (
	// ExceptionActive is True while the exception applies.
	ExceptionActive = "Active"
	// ExceptionExpired is True once expires has passed.
	ExceptionExpired = "Expired"
)

// SlimImageExceptionStatus reports whether an exception still applies.
type SlimImageExceptionStatus struct {
	// Conditions: "Active" while the exception applies, "Expired" once it
	// no longer does.
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// SlimImageException waives the findings of SlimImagePolicies for some
// images of its namespace, for a stated reason, until it expires.
// +kubebuilder:printcolumn:name="Expires",type=string,format=date-time,JSONPath=`.spec.expires`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.conditions[?(@.type=="Active")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.spec.reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=sie
// +kubebuilder:object:root=true
type SlimImageException struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the exception: what it waives, where, why, until when.
	Spec SlimImageExceptionSpec `json:"spec"`

	// Status reports whether the exception still applies.
	// +optional
	Status SlimImageExceptionStatus `json:"status,omitempty"`
}

// SlimImageExceptionList is a list of SlimImageException.
// +kubebuilder:object:root=true
type SlimImageExceptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the exceptions.
	Items []SlimImageException `json:"items"`
}
