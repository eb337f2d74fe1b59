package admission

import (
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// judgedKind is everything slimgate knows of one kind it judges.
type judgedKind struct {
	gvk schema.GroupVersionKind
	// resource is the kind's resource in the webhook configuration's
	// rules; subresources are the subresources of it judged as well.
	resource     string
	subresources []string
	// path is the field path of the kind's Pod spec.
	path string
	// newObject returns an empty object of the kind.
	newObject func() client.Object
	// podSpec returns the Pod spec of obj, an object of newObject's type;
	// nil when the object has none. With alloc it first makes the optional
	// Pod template a kind may lack (a ReplicationController's).
	podSpec func(obj client.Object, alloc bool) *corev1.PodSpec
	// slim returns the Pod spec of the slim decode; nil when absent.
	slim func(*slimObject) *slimPodSpec
}

// Field paths of the Pod spec in the kinds' objects.
const (
	podPath         = "spec"
	templatePath    = "spec.template.spec"
	jobTemplatePath = "spec.jobTemplate.spec.template.spec"
)

// judgedKinds is the read-only table of the kinds slimgate judges.
// config/webhook registers exactly these; a test holds them equal.
var judgedKinds = []judgedKind{
	{
		gvk: corev1.SchemeGroupVersion.WithKind("Pod"), resource: "pods", subresources: []string{"ephemeralcontainers"},
		path: podPath, slim: (*slimObject).podSpec,
		newObject: func() client.Object { return &corev1.Pod{} },
		podSpec:   func(o client.Object, _ bool) *corev1.PodSpec { return &o.(*corev1.Pod).Spec },
	},
	{
		gvk: corev1.SchemeGroupVersion.WithKind("ReplicationController"), resource: "replicationcontrollers",
		path: templatePath, slim: (*slimObject).templateSpec,
		newObject: func() client.Object { return &corev1.ReplicationController{} },
		podSpec: func(o client.Object, alloc bool) *corev1.PodSpec {
			rc := o.(*corev1.ReplicationController)
			if rc.Spec.Template == nil && alloc {
				rc.Spec.Template = &corev1.PodTemplateSpec{}
			}
			if rc.Spec.Template == nil {
				return nil
			}
			return &rc.Spec.Template.Spec
		},
	},
	{
		gvk: appsv1.SchemeGroupVersion.WithKind("Deployment"), resource: "deployments",
		path: templatePath, slim: (*slimObject).templateSpec,
		newObject: func() client.Object { return &appsv1.Deployment{} },
		podSpec:   func(o client.Object, _ bool) *corev1.PodSpec { return &o.(*appsv1.Deployment).Spec.Template.Spec },
	},
	{
		gvk: appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), resource: "replicasets",
		path: templatePath, slim: (*slimObject).templateSpec,
		newObject: func() client.Object { return &appsv1.ReplicaSet{} },
		podSpec:   func(o client.Object, _ bool) *corev1.PodSpec { return &o.(*appsv1.ReplicaSet).Spec.Template.Spec },
	},
	{
		gvk: appsv1.SchemeGroupVersion.WithKind("StatefulSet"), resource: "statefulsets",
		path: templatePath, slim: (*slimObject).templateSpec,
		newObject: func() client.Object { return &appsv1.StatefulSet{} },
		podSpec:   func(o client.Object, _ bool) *corev1.PodSpec { return &o.(*appsv1.StatefulSet).Spec.Template.Spec },
	},
	{
		gvk: appsv1.SchemeGroupVersion.WithKind("DaemonSet"), resource: "daemonsets",
		path: templatePath, slim: (*slimObject).templateSpec,
		newObject: func() client.Object { return &appsv1.DaemonSet{} },
		podSpec:   func(o client.Object, _ bool) *corev1.PodSpec { return &o.(*appsv1.DaemonSet).Spec.Template.Spec },
	},
	{
		gvk: batchv1.SchemeGroupVersion.WithKind("Job"), resource: "jobs",
		path: templatePath, slim: (*slimObject).templateSpec,
		newObject: func() client.Object { return &batchv1.Job{} },
		podSpec:   func(o client.Object, _ bool) *corev1.PodSpec { return &o.(*batchv1.Job).Spec.Template.Spec },
	},
	{
		gvk: batchv1.SchemeGroupVersion.WithKind("CronJob"), resource: "cronjobs",
		path: jobTemplatePath, slim: (*slimObject).jobTemplateSpec,
		newObject: func() client.Object { return &batchv1.CronJob{} },
		podSpec: func(o client.Object, _ bool) *corev1.PodSpec {
			return &o.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template.Spec
		},
	},
}

// kindOf returns the table entry of gvk, or nil when slimgate does not
// judge it.
func kindOf(gvk schema.GroupVersionKind) *judgedKind {
	for i := range judgedKinds {
		if judgedKinds[i].gvk == gvk {
			return &judgedKinds[i]
		}
	}
	return nil
}

// supported reports whether group/kind is one slimgate judges.
func supported(gk schema.GroupKind) bool {
	for i := range judgedKinds {
		if judgedKinds[i].gvk.GroupKind() == gk {
			return true
		}
	}
	return false
}

// Kinds lists the kinds slimgate judges, in the table's order.
func Kinds() []schema.GroupVersionKind {
	out := make([]schema.GroupVersionKind, len(judgedKinds))
	for i := range judgedKinds {
		out[i] = judgedKinds[i].gvk
	}
	return out
}

// PodSpecOf returns the Pod spec of obj, a typed object of a kind slimgate
// judges (a *corev1.Pod, *appsv1.Deployment, ...), the field path of that
// spec and the object's kind; ok is false for an object of any other type.
// The spec is nil for a ReplicationController without a template.
func PodSpecOf(obj client.Object) (spec *corev1.PodSpec, path string, gvk schema.GroupVersionKind, ok bool) {
	t := reflect.TypeOf(obj)
	for i := range judgedKinds {
		k := &judgedKinds[i]
		if reflect.TypeOf(k.newObject()) == t {
			return k.podSpec(obj, false), k.path, k.gvk, true
		}
	}
	return nil, "", schema.GroupVersionKind{}, false
}
