package admission

import (
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Time of check and time of use: the webhook judges what a tag names now,
// the kubelet pulls what it names later.

// rechecksTags reports whether a review resolves every tag anew rather
// than trusting the tag cache: a Pod CREATE, the review closest to the
// kubelet's pull. UPDATEs and the workload kinds keep the cache; the Pods
// those workloads create are checked when they are created.
func rechecksTags(req admission.Request) bool {
	return req.Operation == admissionv1.Create && req.Kind.Group == "" && req.Kind.Kind == "Pod" && req.SubResource == ""
}
