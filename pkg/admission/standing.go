package admission

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// +kubebuilder:rbac:groups=apps,resources=deployments;replicasets;statefulsets;daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=replicationcontrollers,verbs=get;list;watch

// Workloads are judged where people change them. A Deployment's template
// is judged when someone creates or updates the Deployment; the
// ReplicaSet the deployment controller then makes from it, and the Pods
// the ReplicaSet controller makes from that, carry the same images. Under
// spec.existingWorkloads Keep such a child inherits its owner's standing:
// it is admitted, and what the policy finds in its images is recorded as
// ImageGrandfathered, regarding the owner, instead of denying it (which
// would stop a workload admitted before Enforce from scaling, replacing a
// lost Pod or rolling out). An image inherits only when both hold:
//
//   - the request comes from a built-in controller's own identity
//     (Options.ControllerIdentities): a user who may create Pods cannot
//     borrow a controller's standing by writing an owner reference;
//   - the owner named by the child's controller reference is live in the
//     webhook's informer cache with that UID, and its template has the
//     same image in the same slot (containers, init and ephemeral
//     containers, image volumes, by name). A tag the pinning webhook
//     resolved to a digest ("app:1" as "app:1@sha256:…") is the same
//     image.
//
// Anything else, a changed image, an owner that does not exist, a forged
// or mismatched reference, is judged as before, and so is an image in a
// slot the template does not have (a sidecar a mutating webhook injects):
// the owner's template is the authority, and whoever changes it is judged
// at that UPDATE.
//
// A Pod CREATE resolves its tags anew (rechecksTags), but a controller's
// Pod whose every image inherits, under policies that all keep existing
// workloads, is admitted whatever its tags name now: its review takes the
// registry client's cached resolution of each tag (minutes old at most)
// for the record instead of asking each registry again for every Pod of
// a rollout.

// DefaultControllerIdentities returns the user names of
// kube-controller-manager's workload controllers: each one's service
// account in kube-system (--use-service-account-credentials, the default
// of kubeadm and the managed control planes) and the controller manager's
// own user.
func DefaultControllerIdentities() []string {
	names := []string{"replicaset", "deployment", "job", "cronjob", "statefulset", "daemon-set", "replication"}
	out := make([]string, 0, len(names)+1)
	for _, n := range names {
		out = append(out, "system:serviceaccount:kube-system:"+n+"-controller")
	}
	return append(out, "system:kube-controller-manager")
}

// identitySet returns the set of ids; nil ids: DefaultControllerIdentities.
func identitySet(ids []string) map[string]bool {
	if ids == nil {
		ids = DefaultControllerIdentities()
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// DefaultOwnerWait is how long the review of a controller's child waits,
// at most, for its owner to appear in the informer cache, or for the
// cached template to catch up with the child: the controller writes the
// child right after the owner, and the cache follows within milliseconds.
const DefaultOwnerWait = 2 * time.Second

// The cache is read again while waiting after firstOwnerPoll, then twice
// as long each time up to ownerPoll: the owner usually arrives a few
// milliseconds after its child's review started, and a rollout's first
// Pods wait for it.
const (
	firstOwnerPoll = time.Millisecond
	ownerPoll      = 20 * time.Millisecond
)

// parentKinds lists, per kind a built-in controller creates, the kinds
// of owner it creates it from.
var parentKinds = map[schema.GroupKind][]schema.GroupVersionKind{
	{Kind: "Pod"}: {
		appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
		appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
		batchv1.SchemeGroupVersion.WithKind("Job"),
		corev1.SchemeGroupVersion.WithKind("ReplicationController"),
	},
	{Group: "apps", Kind: "ReplicaSet"}: {appsv1.SchemeGroupVersion.WithKind("Deployment")},
	{Group: "batch", Kind: "Job"}:       {batchv1.SchemeGroupVersion.WithKind("CronJob")},
}

// OwnerObjects returns an empty object of every kind a child may inherit
// its standing from, and of ControllerRevision (a StatefulSet's Pods are
// made from its revisions). The webhook keeps them in its informer cache,
// stripped by StripOwner.
func OwnerObjects() []client.Object {
	var out []client.Object
	for _, gvk := range []schema.GroupVersionKind{
		appsv1.SchemeGroupVersion.WithKind("Deployment"),
		appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
		appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
		batchv1.SchemeGroupVersion.WithKind("Job"),
		batchv1.SchemeGroupVersion.WithKind("CronJob"),
		corev1.SchemeGroupVersion.WithKind("ReplicationController"),
	} {
		out = append(out, kindOf(gvk).newObject())
	}
	return append(out, &appsv1.ControllerRevision{})
}

// StripOwner is the informer cache's transform for OwnerObjects: it keeps
// of an object only what the rule reads (name, namespace, UID, resource
// version, owner references, deletion time, and the name and image of
// each slot of its template; a StatefulSet's current and update revision
// names; a ControllerRevision's template slots) so that caching every
// workload of a cluster costs little memory. Anything else passes through unchanged. Readers
// of these kinds through the same cache see the stripped objects.
func StripOwner(in any) (any, error) {
	if rev, ok := in.(*appsv1.ControllerRevision); ok {
		return stripRevision(rev), nil
	}
	obj, ok := in.(client.Object)
	if !ok {
		return in, nil
	}
	for i := range judgedKinds {
		k := &judgedKinds[i]
		out := k.newObject()
		if reflect.TypeOf(out) != reflect.TypeOf(obj) || k.gvk.Kind == "Pod" {
			continue
		}
		out.SetName(obj.GetName())
		out.SetNamespace(obj.GetNamespace())
		out.SetUID(obj.GetUID())
		out.SetResourceVersion(obj.GetResourceVersion())
		out.SetGeneration(obj.GetGeneration())
		out.SetOwnerReferences(obj.GetOwnerReferences())
		out.SetDeletionTimestamp(obj.GetDeletionTimestamp())
		if spec := k.podSpec(obj, false); spec != nil {
			*k.podSpec(out, true) = ImagesOnly(spec)
		}
		if sts, ok := obj.(*appsv1.StatefulSet); ok {
			status := &out.(*appsv1.StatefulSet).Status
			status.CurrentRevision, status.UpdateRevision = sts.Status.CurrentRevision, sts.Status.UpdateRevision
		}
		return out, nil
	}
	return in, nil
}

// ImagesOnly returns the slots of a Pod spec, names and images alone, and
// the names its registry credentials come from (service account, image
// pull secrets): what a review, and the background scan, read of a spec
// kept in a cache.
func ImagesOnly(s *corev1.PodSpec) corev1.PodSpec {
	out := corev1.PodSpec{ServiceAccountName: s.ServiceAccountName, ImagePullSecrets: s.ImagePullSecrets}
	for _, c := range s.InitContainers {
		out.InitContainers = append(out.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range s.Containers {
		out.Containers = append(out.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range s.EphemeralContainers {
		out.EphemeralContainers = append(out.EphemeralContainers,
			corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image}})
	}
	for _, v := range s.Volumes {
		if v.Image != nil {
			out.Volumes = append(out.Volumes, corev1.Volume{Name: v.Name,
				VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: v.Image.Reference}}})
		}
	}
	return out
}

// standing is what a review found out about the owner of the object
// under review.
type standing struct {
	// verified is the object the review's Events regard instead of the
	// object under review (events.Decision.VerifiedOwner): the verified
	// owner, or that owner's own verified controller (a Deployment or a
	// CronJob); nil when no owner was verified.
	verified *corev1.ObjectReference
	// template holds, per slot, the image of the verified owner's
	// template, when a controller identity created the object; nil
	// otherwise.
	template map[slot]string
	// owner names the verified owner in notes ("ReplicaSet web-5d4f8").
	owner string
}

// slot is a place in a Pod spec that holds an image: its kind and the
// container's (or image volume's) name.
type slot struct {
	source source
	name   string
}

// templateSlots maps each slot of imgs to its image. A name that occurs
// twice in one kind of slot (which the API server does not store) is left
// out: neither image can be told to be the one a child's slot copies.
func templateSlots(imgs []Image) map[slot]string {
	out := make(map[slot]string, len(imgs))
	twice := map[slot]bool{}
	for _, img := range imgs {
		s := slot{img.Source, img.Container}
		if _, ok := out[s]; ok {
			twice[s] = true
		}
		out[s] = img.Reference
	}
	for s := range twice {
		delete(out, s)
	}
	return out
}

// inherits reports whether img, of the object under review, is the image
// the verified owner's template has in the same slot: the same reference,
// or the template's tag pinned to a digest.
func (st standing) inherits(img Image) bool {
	ref, ok := st.template[slot{img.Source, img.Container}]
	return ok && sameReference(ref, img.Reference)
}

// inheritsAll reports whether every image of imgs inherits (inherits).
func (st standing) inheritsAll(imgs []Image) bool {
	for _, img := range imgs {
		if !st.inherits(img) {
			return false
		}
	}
	return len(imgs) > 0
}

// stale reports whether an image of want sits in a slot that the
// template fills with another image: the cache may not have the owner's
// latest template yet. A slot the template lacks (a sidecar a mutating
// webhook added) is not waited for.
func (st standing) stale(want []Image) bool {
	for _, img := range want {
		if ref, ok := st.template[slot{img.Source, img.Container}]; ok && !sameReference(ref, img.Reference) {
			return true
		}
	}
	return false
}

// standingOf finds the standing of the object under review. It reads the
// owner only for a request from a controller identity, and waits for the
// cache (up to OwnerWait, within the review's deadline) only while the
// owner is missing or its template is stale for an image of want, the
// images whose findings the owner's standing could cover.
func (h *Handler) standingOf(ctx context.Context, req admission.Request, w *Workload, want []Image) standing {
	var self standing
	ref := metav1.GetControllerOf(w.Object)
	if ref == nil || !h.controllers[req.UserInfo.Username] ||
		req.Operation != admissionv1.Create || req.SubResource != "" {
		return self
	}
	k := parentKind(w.Kind.GroupKind(), ref)
	if k == nil {
		return self
	}
	namespace := w.Object.GetNamespace()
	if namespace == "" {
		namespace = req.Namespace
	}
	key := types.NamespacedName{Namespace: namespace, Name: ref.Name}
	wait := cmp.Or(h.opts.OwnerWait, DefaultOwnerWait)
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline))
	}
	until := time.Now().Add(wait)
	found := self
	var stale ownerVersion // the owner version last found stale
	for poll := firstOwnerPoll; ; poll = min(2*poll, ownerPoll) {
		owner := k.newObject()
		err := h.opts.Reader.Get(ctx, key, owner)
		switch {
		case err == nil && owner.GetUID() == ref.UID:
			found = standing{
				verified: h.verifiedController(ctx, owner, k.gvk),
				owner:    k.gvk.Kind + " " + owner.GetName(),
				template: h.revisionSlots(ctx, w.Object, owner, k.path),
			}
			if found.template == nil {
				found.template = templateSlots(Images(k.podSpec(owner, false), k.path))
			}
			if !found.stale(want) {
				return found
			}
			stale = ownerVersion{uid: owner.GetUID(), resourceVersion: owner.GetResourceVersion()}
			if _, waited := h.staleOwners.get(stale); waited {
				return found
			}
		case err != nil && !apierrors.IsNotFound(err):
			logf.FromContext(ctx).Info("owner not readable; judging the object on its own", "owner", k.gvk.Kind+"/"+ref.Name, "error", err.Error())
			return self
		case len(want) == 0:
			return self
		}
		if !pause(ctx, until, poll) {
			if stale.uid != "" && found.stale(want) {
				h.staleOwners.put(stale, struct{}{}, int64(64+len(stale.uid)+len(stale.resourceVersion)))
			}
			return found
		}
	}
}

// ownerVersion is one version of an owner in the cache. A review that
// waited the whole OwnerWait for a newer template than this version's
// remembers it (Handler.staleOwners): the next children of that version
// are judged without waiting, as when a mutating webhook rewrites every
// Pod's image to a mirror's and no version of the template will match.
type ownerVersion struct {
	uid             types.UID
	resourceVersion string
}

// pause waits d and reports true, or reports false at once when ctx ends
// first or the wait would pass until.
func pause(ctx context.Context, until time.Time, d time.Duration) bool {
	if time.Now().Add(d).After(until) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// parentKind returns the table entry of the kind ref names when a
// built-in controller creates objects of kind child from it; nil
// otherwise.
func parentKind(child schema.GroupKind, ref *metav1.OwnerReference) *judgedKind {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil
	}
	gvk := gv.WithKind(ref.Kind)
	for _, p := range parentKinds[child] {
		if p == gvk {
			return kindOf(gvk)
		}
	}
	return nil
}

// verifiedController returns the reference an Event about a child of
// owner regards: owner's own controller when that is a kind whose
// children slimgate follows (a ReplicaSet's Deployment, a Job's CronJob)
// and is live in the cache with the UID named, else owner itself.
func (h *Handler) verifiedController(ctx context.Context, owner client.Object, gvk schema.GroupVersionKind) *corev1.ObjectReference {
	apiVersion, kind := gvk.ToAPIVersionAndKind()
	self := &corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Namespace: owner.GetNamespace(), Name: owner.GetName(), UID: owner.GetUID()}
	ref := metav1.GetControllerOf(owner)
	if ref == nil {
		return self
	}
	k := parentKind(gvk.GroupKind(), ref)
	if k == nil {
		return self
	}
	up := k.newObject()
	if err := h.opts.Reader.Get(ctx, types.NamespacedName{Namespace: owner.GetNamespace(), Name: ref.Name}, up); err != nil || up.GetUID() != ref.UID {
		return self
	}
	return &corev1.ObjectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Namespace: owner.GetNamespace(), Name: ref.Name, UID: ref.UID}
}

// sameReference reports whether child names the image template does: the
// same reference, or template's tag with the digest the pinning webhook
// appended ("app:1" and "app:1@sha256:…").
func sameReference(template, child string) bool {
	if child == template {
		return true
	}
	digest, ok := strings.CutPrefix(child, template+"@")
	return ok && !strings.Contains(template, "@") && isDigest(digest)
}

// inheritable returns the images whose findings the object's standing
// could cover: those a policy that keeps existing workloads found
// something in.
func inheritable(js []judgment) []Image {
	var out []Image
	for _, j := range js {
		if keeps(j.policy) && j.strictest() != "" {
			out = append(out, j.image)
		}
	}
	return out
}

// recordable reports whether a decision will be recorded as an Event,
// which regards the object's verified owner when there is one.
func recordable(js []judgment) bool {
	for _, j := range js {
		if j.strictest() != "" || j.failure != nil {
			return true
		}
	}
	return false
}

// grandfather marks the judgments the object's standing covers: those
// with findings, of policies with spec.existingWorkloads Keep, on images
// the verified owner's template has in the same slot.
func grandfather(js []judgment, st standing) {
	for i := range js {
		if keeps(js[i].policy) && js[i].strictest() != "" && st.inherits(js[i].image) {
			js[i].grandfathered = true
		}
	}
}

// allKeep reports whether every policy keeps existing workloads.
func allKeep(policies []*compiledPolicy) bool {
	for _, p := range policies {
		if !keeps(p.object) {
			return false
		}
	}
	return true
}

// keeps reports whether a policy lets controllers' children inherit their
// owner's standing (its object has its defaults applied).
func keeps(p *v1alpha1.SlimImagePolicy) bool {
	return p.Spec.ExistingWorkloads != v1alpha1.ExistingWorkloadsJudge
}

// inheritNote starts the note of a decision with grandfathered images.
func (st standing) inheritNote(w *Workload) string {
	return fmt.Sprintf("admitted as in the template of %s, from which a controller made this %s (existingWorkloads Keep: images are judged where that template is changed):",
		st.owner, w.Kind.Kind)
}
