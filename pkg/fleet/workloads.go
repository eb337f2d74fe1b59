package fleet

import (
	"cmp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/pkg/admission"
)

// Workload is one workload of a namespace as the scan reports it: an
// object of a kind slimgate judges that no other judged object controls
// (a Deployment, a CronJob, a ReplicaSet or Job of its own, a Pod no judged
// controller made), with the Pods it runs, through any depth of owners.
type Workload struct {
	// Object is the workload.
	Object client.Object
	// Kind is its kind.
	Kind schema.GroupVersionKind
	// Spec is its Pod spec (a Pod's own, or the template); nil for a
	// ReplicationController without a template.
	Spec *corev1.PodSpec
	// Path is the field path of Spec.
	Path string
	// Pods are the Pods it runs (for a Pod, itself).
	Pods []*corev1.Pod
}

// Ref names a workload in results and reports.
type Ref struct {
	Kind      schema.GroupVersionKind `json:"-"`
	Namespace string                  `json:"namespace"`
	Name      string                  `json:"name"`
	UID       types.UID               `json:"uid,omitempty"`
}

// Ref returns the workload's name.
func (w *Workload) Ref() Ref {
	return Ref{Kind: w.Kind, Namespace: w.Object.GetNamespace(), Name: w.Object.GetName(), UID: w.Object.GetUID()}
}

// String is "Kind/namespace/name".
func (r Ref) String() string { return r.Kind.Kind + "/" + r.Namespace + "/" + r.Name }

// maxOwnerDepth bounds the walk up a chain of owners; judged kinds nest at
// most three deep (CronJob, Job, Pod).
const maxOwnerDepth = 4

// Group sorts the objects of one namespace into workloads. objects are
// typed objects of the kinds slimgate judges, Pods among them
// (admission.PodSpecOf; others are ignored). An object whose
// controller (its controller owner reference, by UID) is another judged
// object is folded into that owner: a Deployment's ReplicaSets and their
// Pods, a CronJob's Jobs and theirs. An object whose controller is of a
// kind slimgate does not judge, or is gone, is a workload of its own. The
// result is sorted by kind and name.
func Group(objects []client.Object) []Workload {
	type node struct {
		obj   client.Object
		owner types.UID
	}
	nodes := make(map[types.UID]node, len(objects))
	var order []types.UID
	add := func(o client.Object) {
		if _, _, _, ok := admission.PodSpecOf(o); !ok || o.GetUID() == "" {
			return
		}
		if _, dup := nodes[o.GetUID()]; dup {
			return
		}
		nodes[o.GetUID()] = node{obj: o, owner: controllerOf(o)}
		order = append(order, o.GetUID())
	}
	for _, o := range objects {
		add(o)
	}
	root := func(uid types.UID) types.UID {
		for range maxOwnerDepth {
			n := nodes[uid]
			if _, ok := nodes[n.owner]; n.owner == "" || !ok || n.owner == uid {
				break
			}
			uid = n.owner
		}
		return uid
	}
	byRoot := make(map[types.UID]*Workload)
	var out []*Workload
	for _, uid := range order {
		r := root(uid)
		w := byRoot[r]
		if w == nil {
			obj := nodes[r].obj
			spec, path, gvk, _ := admission.PodSpecOf(obj)
			w = &Workload{Object: obj, Kind: gvk, Spec: spec, Path: path}
			byRoot[r] = w
			out = append(out, w)
		}
		if p, ok := nodes[uid].obj.(*corev1.Pod); ok {
			w.Pods = append(w.Pods, p)
		}
	}
	slices.SortFunc(out, func(a, b *Workload) int {
		return cmp.Or(cmp.Compare(a.Kind.Kind, b.Kind.Kind), cmp.Compare(a.Object.GetName(), b.Object.GetName()))
	})
	ws := make([]Workload, len(out))
	for i, w := range out {
		ws[i] = *w
	}
	return ws
}

// controllerOf returns the UID of o's controller, or "".
func controllerOf(o client.Object) types.UID {
	for _, r := range o.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller {
			return r.UID
		}
	}
	return ""
}

// Source says which reference of an image a Target judges.
type Source string

// Sources of a judged reference.
const (
	// SourceRunning: the digest a Pod runs (its container status's
	// imageID).
	SourceRunning Source = "running"
	// SourceSpec: the reference the spec names, no Pod reporting what it
	// runs.
	SourceSpec Source = "spec"
)

// Target is one image of a workload to judge.
type Target struct {
	// Image is the image as admission judges it; its Reference is the
	// reference judged: the spec's reference pinned to the running digest
	// ("app:1.2@sha256:…") when a Pod reports one, the spec's as written
	// otherwise.
	admission.Image
	// Written is the reference the spec names.
	Written string
	// From says whether Reference names the running digest.
	From Source
}

// Targets lists the images of a workload to judge, each once per place
// (kind of container and name) and reference: for each Pod, every image
// of its spec (containers, init, ephemeral, image volumes) at the digest
// its status reports, or as written when it reports none; then the images
// of the workload's spec in places no Pod has (a workload scaled to zero,
// a CronJob between runs). Pods that run different digests of one place
// (a rollout, a tag that moved) give one target each.
func Targets(w *Workload) []Target {
	type key struct {
		source, container, ref string
	}
	seen := make(map[key]bool)
	places := make(map[[2]string]bool)
	var out []Target
	add := func(img admission.Image, running string) {
		t := Target{Image: img, Written: img.Reference, From: SourceSpec}
		if ref := pinned(img.Reference, running); ref != "" {
			t.Reference, t.From = ref, SourceRunning
		}
		places[[2]string{string(img.Source), img.Container}] = true
		k := key{string(img.Source), img.Container, t.Reference}
		if t.Reference == "" || seen[k] {
			return
		}
		seen[k] = true
		out = append(out, t)
	}
	for _, p := range w.Pods {
		ids := imageIDs(p)
		for _, img := range admission.Images(&p.Spec, "spec") {
			add(img, ids[[2]string{string(img.Source), img.Container}])
		}
	}
	for _, img := range admission.Images(w.Spec, w.Path) {
		if !places[[2]string{string(img.Source), img.Container}] {
			add(img, "")
		}
	}
	return out
}

// imageIDs maps a Pod's places (source, container name) to the image ID
// its status reports.
func imageIDs(p *corev1.Pod) map[[2]string]string {
	ids := make(map[[2]string]string)
	for _, s := range []struct {
		source   string
		statuses []corev1.ContainerStatus
	}{
		{"initContainer", p.Status.InitContainerStatuses},
		{"container", p.Status.ContainerStatuses},
		{"ephemeralContainer", p.Status.EphemeralContainerStatuses},
	} {
		for _, cs := range s.statuses {
			if cs.ImageID != "" {
				ids[[2]string{s.source, cs.Name}] = cs.ImageID
			}
		}
	}
	return ids
}

// pinned returns the reference that names the digest an image ID reports
// for an image written as ref: ref with the digest appended (or replaced)
// when the image ID is of the same repository, so that exclusions and
// messages still see the tag; the image ID's own repository and digest
// when it names another (a mirror the runtime pulled from). It returns ""
// when the image ID names no registry digest (a bare image ID, an image
// built on the node): only the written reference can be judged then.
func pinned(ref, imageID string) string {
	id := imageID
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+len("://"):]
	}
	at := strings.LastIndex(id, "@")
	if at <= 0 {
		return ""
	}
	running, err := name.NewDigest(id)
	if err != nil {
		return ""
	}
	written, err := name.ParseReference(strings.TrimSpace(ref))
	if err != nil || written.Context().Name() != running.Context().Name() {
		return running.String()
	}
	if d, ok := written.(name.Digest); ok {
		if d.DigestStr() == running.DigestStr() {
			return strings.TrimSpace(ref)
		}
		base := strings.TrimSpace(ref)
		return base[:strings.LastIndex(base, "@")] + "@" + running.DigestStr()
	}
	return strings.TrimSpace(ref) + "@" + running.DigestStr()
}
