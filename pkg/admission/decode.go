package admission

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Workload is a decoded object that carries a Pod spec.
type Workload struct {
	// Object is the decoded object.
	Object client.Object
	// Kind is its group, version and kind as decoded.
	Kind schema.GroupVersionKind
	// Spec is its Pod spec (or Pod template spec); nil when absent.
	Spec *corev1.PodSpec
	// Path is the field path of Spec.
	Path string
}

// ErrUnsupportedKind is returned for an object slimgate does not judge.
var ErrUnsupportedKind = errors.New("kind not judged by slimgate")

// Decoder turns admission request objects into Workloads. It decodes by the
// object's own apiVersion and kind rather than trusting the request's.
type Decoder struct {
	codec runtime.Decoder
}

// NewDecoder returns a decoder for core/v1, apps/v1 and batch/v1.
func NewDecoder() (*Decoder, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building scheme: %w", err)
		}
	}
	return &Decoder{codec: serializer.NewCodecFactory(s).UniversalDeserializer()}, nil
}

// Supported reports whether group/kind is one slimgate judges.
func Supported(gk schema.GroupKind) bool {
	switch gk {
	case schema.GroupKind{Kind: "Pod"}, schema.GroupKind{Kind: "ReplicationController"},
		schema.GroupKind{Group: "apps", Kind: "Deployment"}, schema.GroupKind{Group: "apps", Kind: "ReplicaSet"},
		schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, schema.GroupKind{Group: "apps", Kind: "DaemonSet"},
		schema.GroupKind{Group: "batch", Kind: "Job"}, schema.GroupKind{Group: "batch", Kind: "CronJob"}:
		return true
	}
	return false
}

// Decode decodes raw JSON (or YAML) into a Workload. It fails with
// ErrUnsupportedKind for objects of other kinds.
func (d *Decoder) Decode(raw []byte) (*Workload, error) {
	if len(raw) == 0 {
		return nil, errors.New("empty object")
	}
	obj, gvk, err := d.codec.Decode(raw, nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedKind, err)
		}
		return nil, fmt.Errorf("decoding object: %w", err)
	}
	w := &Workload{Kind: *gvk}
	switch o := obj.(type) {
	case *corev1.Pod:
		w.Object, w.Spec, w.Path = o, &o.Spec, "spec"
	case *corev1.ReplicationController:
		w.Object, w.Path = o, "spec.template.spec"
		if o.Spec.Template != nil {
			w.Spec = &o.Spec.Template.Spec
		}
	case *appsv1.Deployment:
		w.Object, w.Spec, w.Path = o, &o.Spec.Template.Spec, "spec.template.spec"
	case *appsv1.ReplicaSet:
		w.Object, w.Spec, w.Path = o, &o.Spec.Template.Spec, "spec.template.spec"
	case *appsv1.StatefulSet:
		w.Object, w.Spec, w.Path = o, &o.Spec.Template.Spec, "spec.template.spec"
	case *appsv1.DaemonSet:
		w.Object, w.Spec, w.Path = o, &o.Spec.Template.Spec, "spec.template.spec"
	case *batchv1.Job:
		w.Object, w.Spec, w.Path = o, &o.Spec.Template.Spec, "spec.template.spec"
	case *batchv1.CronJob:
		w.Object, w.Spec, w.Path = o, &o.Spec.JobTemplate.Spec.Template.Spec, "spec.jobTemplate.spec.template.spec"
	default:
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedKind, gvk)
	}
	return w, nil
}
