package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode says what slimgate does with an image that breaks a rule.
// +kubebuilder:validation:Enum=Enforce;Warn;Audit
type Mode string

const (
	// ModeEnforce denies the request.
	ModeEnforce Mode = "Enforce"
	// ModeWarn admits the request and returns an admission warning.
	ModeWarn Mode = "Warn"
	// ModeAudit admits the request silently; only an Event records it.
	ModeAudit Mode = "Audit"
)

// InspectionErrorAction says what happens when an image cannot be inspected.
// +kubebuilder:validation:Enum=Allow;Deny
type InspectionErrorAction string

const (
	// InspectionErrorAllow admits an image that could not be inspected.
	InspectionErrorAllow InspectionErrorAction = "Allow"
	// InspectionErrorDeny judges an image that could not be inspected as a
	// violation, handled according to the policy's mode.
	InspectionErrorDeny InspectionErrorAction = "Deny"
)

// ExistingWorkloads says how the objects that built-in controllers create
// from an admitted workload's template are judged.
// +kubebuilder:validation:Enum=Keep;Judge
type ExistingWorkloads string

const (
	// ExistingWorkloadsKeep lets the images of a ReplicaSet, Job or Pod
	// that a built-in controller creates from its owner's template, where
	// they are the template's, inherit the owner's standing: they are
	// admitted, and a violation is recorded (Event ImageGrandfathered on
	// the owner). New or changed images are judged where people write
	// them, at the workload's CREATE or UPDATE.
	ExistingWorkloadsKeep ExistingWorkloads = "Keep"
	// ExistingWorkloadsJudge judges every object on its own, controllers'
	// children included: under Enforce a workload admitted before the
	// policy cannot scale up or replace its Pods.
	ExistingWorkloadsJudge ExistingWorkloads = "Judge"
)

// SlimImagePolicySpec is what a policy asks of the images it applies to.
// +kubebuilder:validation:XValidation:rule="!has(self.toolchains) || !has(self.toolchains.deny) || !has(self.toolchains.allow) || self.toolchains.deny.all(d, !(d in self.toolchains.allow))",message="toolchains: a rule cannot be both denied and allowed"
type SlimImagePolicySpec struct {
	// Mode is what a violation does: Enforce denies, Warn admits with a
	// warning, Audit admits silently. All three record an Event.
	// +kubebuilder:default=Enforce
	// +optional
	Mode Mode `json:"mode,omitempty"`

	// NamespaceSelector picks the namespaces this policy applies to. Empty or
	// absent: every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// Toolchains chooses the rules of the catalog this policy applies.
	// +optional
	Toolchains ToolchainRules `json:"toolchains,omitempty"`

	// SizeBudget caps the size of an image, read from its manifest.
	// +optional
	SizeBudget SizeBudget `json:"sizeBudget,omitempty"`

	// Exclude lists what this policy never judges.
	// +optional
	Exclude Exclusions `json:"exclude,omitempty"`

	// Registries guards which registries the webhook may contact.
	// +optional
	Registries RegistryRules `json:"registries,omitempty"`

	// Platforms lists the platforms ("os/arch" or "os/arch/variant") judged
	// in a multi-platform image. Empty: every linux platform in the index.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`
	// +optional
	Platforms []string `json:"platforms,omitempty"`

	// OnInspectionError says what happens when an image cannot be fetched or
	// read in time: Allow admits it (and records why), Deny treats it as a
	// violation.
	// +kubebuilder:default=Allow
	// +optional
	OnInspectionError InspectionErrorAction `json:"onInspectionError,omitempty"`

	// RequireDigests makes every image reference that names no digest
	// (a tag alone, "app:1.2") a violation (rule reference.digest),
	// handled by the mode like any finding: a tag can be moved to another
	// image between the check and the kubelet's pull, a digest cannot.
	// The webhook's digest pinning (chart value webhook.pinDigests) adds
	// the judged digest to Pods' tags before this check sees them.
	// +optional
	RequireDigests bool `json:"requireDigests,omitempty"`

	// ExistingWorkloads says how the ReplicaSets, Jobs and Pods that the
	// built-in controllers create from a workload's template are judged.
	// Keep: an image of such a child that its live owner's template has
	// in the same container (or image volume) inherits the owner's
	// standing; it is admitted and a violation is recorded as
	// ImageGrandfathered, so a workload admitted before Enforce keeps
	// scaling, replacing Pods and rolling out. Only requests from the
	// controllers' own identities qualify; any other image (a changed one,
	// an injected sidecar) is judged. Judge: every child is judged on its
	// own.
	// +kubebuilder:default=Keep
	// +optional
	ExistingWorkloads ExistingWorkloads `json:"existingWorkloads,omitempty"`

	// Exceptions says whether and where SlimImageExceptions may waive this
	// policy's findings, and for how long at most.
	// +optional
	Exceptions ExceptionRules `json:"exceptions,omitempty"`
}

// ToolchainRules selects rules by their catalog id.
type ToolchainRules struct {
	// Deny lists the rule ids to apply. Empty: every toolchain and build-step
	// rule of the catalog. "toolchain.*" style globs are accepted.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +optional
	Deny []string `json:"deny,omitempty"`

	// Allow lists rule ids (or globs) never applied, even when Deny names them.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +optional
	Allow []string `json:"allow,omitempty"`

	// Custom declares toolchains of this policy's own (an in-house SDK
	// image, a vendor compiler) in the schema of slimgate's catalog. They
	// are rules like the catalog's: Deny and Allow name them by id.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=id
	// +optional
	Custom []Toolchain `json:"custom,omitempty"`
}

// SizeBudget caps an image's size. Absent fields are not checked.
// +kubebuilder:validation:XValidation:rule="!has(self.maxCompressed) || quantity(string(self.maxCompressed)).isGreaterThan(quantity('0'))",message="maxCompressed must be greater than zero",fieldPath=".maxCompressed"
type SizeBudget struct {
	// MaxCompressed is the largest total compressed size of the image's
	// layers, as the registry manifest declares them.
	// +optional
	MaxCompressed *resource.Quantity `json:"maxCompressed,omitempty"`

	// MaxLayers is the largest number of layers.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxLayers *int32 `json:"maxLayers,omitempty"`
}

// Exclusions lists what a policy does not judge.
type Exclusions struct {
	// Images are glob patterns ("registry.k8s.io/*") matched against the
	// image reference as written in the workload and as normalised.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	Images []string `json:"images,omitempty"`

	// EphemeralContainers excludes debug containers added with
	// kubectl debug. Default true: they are meant to carry tools.
	// +kubebuilder:default=true
	// +optional
	EphemeralContainers *bool `json:"ephemeralContainers,omitempty"`
}

// RegistryRules is the egress guard: which registries may be contacted.
type RegistryRules struct {
	// Allow lists registry host patterns ("ghcr.io", "*.example.com",
	// "registry.local:5000") the webhook may contact. Empty or "*": any.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=255
	// +optional
	Allow []string `json:"allow,omitempty"`

	// AllowPrivateNetworks lets the webhook connect to loopback, private,
	// link-local and unique-local addresses (an in-cluster registry).
	// +optional
	AllowPrivateNetworks bool `json:"allowPrivateNetworks,omitempty"`

	// Insecure lists registries spoken to over plain HTTP. Anything else
	// uses verified TLS.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=255
	// +optional
	Insecure []string `json:"insecure,omitempty"`
}

// SlimImagePolicyStatus reports whether a policy is in effect.
type SlimImagePolicyStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: "Ready" is true once the webhook applies this policy.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Scan is what the last background scan found under this policy.
	// +optional
	Scan *ScanStatus `json:"scan,omitempty"`

	// Preview is what Enforce would deny in every namespace.
	// +optional
	Preview *PreviewStatus `json:"preview,omitempty"`
}

// SlimImagePolicy keeps bloated images, such as build environments shipped to
// production, out of the namespaces it selects.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=sip
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Scanned",type=integer,JSONPath=`.status.scan.workloadsScanned`
// +kubebuilder:printcolumn:name="In Violation",type=integer,JSONPath=`.status.scan.workloadsInViolation`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.scan.namespacesAffected`
// +kubebuilder:printcolumn:name="Last Scan",type=date,JSONPath=`.status.scan.lastScanTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SlimImagePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	Spec SlimImagePolicySpec `json:"spec"`

	// Status reports whether the policy is in effect.
	// +optional
	Status SlimImagePolicyStatus `json:"status,omitempty"`
}

// SlimImagePolicyList is a list of SlimImagePolicy.
// +kubebuilder:object:root=true
type SlimImagePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SlimImagePolicy `json:"items"`
}
