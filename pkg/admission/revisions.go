package admission

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups=apps,resources=controllerrevisions,verbs=get;list;watch

// A StatefulSet's controller creates each Pod from a revision of its
// template (a ControllerRevision it owns), not from the live template:
// during a partitioned rollout, or when a Pod of the current revision is
// lost while the StatefulSet rolls, the Pod has the images of the current
// revision. Such a Pod inherits from that revision as a ReplicaSet's Pod
// inherits from its (older) ReplicaSet.

// revisionSlots returns the slots of the revision of owner, a
// StatefulSet, that child names in its controller-revision-hash label,
// when the StatefulSet reports it as its current or update revision and
// the revision is the StatefulSet's own; nil otherwise (the live
// template then decides).
func (h *Handler) revisionSlots(ctx context.Context, child, owner client.Object, path string) map[slot]string {
	sts, ok := owner.(*appsv1.StatefulSet)
	if !ok {
		return nil
	}
	name := child.GetLabels()[appsv1.ControllerRevisionHashLabelKey]
	if name == "" || (name != sts.Status.CurrentRevision && name != sts.Status.UpdateRevision) {
		return nil
	}
	var rev appsv1.ControllerRevision
	if err := h.opts.Reader.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: name}, &rev); err != nil {
		return nil
	}
	if ref := metav1.GetControllerOf(&rev); ref == nil || ref.UID != sts.UID {
		return nil
	}
	tmpl, err := revisionTemplate(&rev)
	if err != nil {
		return nil
	}
	return templateSlots(Images(&tmpl.Spec, path))
}

// revisionTemplate decodes the Pod template a StatefulSet's revision
// holds (its data is a patch of the StatefulSet's spec.template).
func revisionTemplate(rev *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var data struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &data); err != nil {
		return nil, fmt.Errorf("revision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return &data.Spec.Template, nil
}

// stripRevision keeps of a ControllerRevision what revisionSlots reads:
// its name, namespace, UID, resource version, owner references and the
// slots of its template (ImagesOnly). A revision whose data is not a
// template keeps no data.
func stripRevision(rev *appsv1.ControllerRevision) *appsv1.ControllerRevision {
	out := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{
		Name: rev.Name, Namespace: rev.Namespace, UID: rev.UID, ResourceVersion: rev.ResourceVersion,
		OwnerReferences: rev.OwnerReferences, DeletionTimestamp: rev.DeletionTimestamp,
	}, Revision: rev.Revision}
	tmpl, err := revisionTemplate(rev)
	if err != nil {
		return out
	}
	raw, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": ImagesOnly(&tmpl.Spec)}}})
	if err == nil {
		out.Data = runtime.RawExtension{Raw: raw}
	}
	return out
}
