package app

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	ctrladmission "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/internal/preview"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
)

// Paths of the preview webhooks (internal/preview); config/webhook must
// match them.
const (
	PreviewNamespacesPath = "/preview-namespaces"
	PreviewPoliciesPath   = "/preview-policies"
)

// previewPublisher returns what publishes each policy's status.preview
// after the background scan: judging is the scan's (its inspector shares
// the registry cache and the scan's pace).
func previewPublisher(mgr ctrl.Manager, o Options, judging admission.Options) (*preview.Publisher, error) {
	never := []string{metav1.NamespaceSystem, corev1.NamespaceNodeLease, metav1.NamespacePublic, o.Namespace}
	return preview.NewPublisher(mgr.GetClient(), fleet.ReaderLister{Reader: mgr.GetClient()}, judging, never)
}

// registerPreview serves the preview webhooks on every replica: they read
// the policies' previews and the namespaces from the manager's cache.
// With the background scan off there is nothing to preview: they allow
// without a word.
func registerPreview(mgr ctrl.Manager, o Options, hooks webhook.Server) {
	var namespaces, policies ctrladmission.Handler
	namespaces, policies = &preview.NamespaceHandler{Reader: mgr.GetClient()}, &preview.PolicyHandler{Reader: mgr.GetClient()}
	if o.ScanInterval <= 0 {
		off := ctrladmission.HandlerFunc(func(context.Context, ctrladmission.Request) ctrladmission.Response {
			return ctrladmission.Allowed("the background scan is off: nothing to preview")
		})
		namespaces, policies = off, off
	}
	hooks.Register(PreviewNamespacesPath, &webhook.Admission{Handler: namespaces})
	hooks.Register(PreviewPoliciesPath, &webhook.Admission{Handler: policies})
}
