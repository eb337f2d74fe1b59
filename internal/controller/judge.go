package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	admit "slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/events"
)

// JudgeFunc judges a Pod that exists as the review of its creation would
// have, recording nothing, and returns the decisions that review would
// have recorded: none when no policy applies to it.
type JudgeFunc func(ctx context.Context, pod *corev1.Pod) ([]events.Decision, error)

// ControllerManager is the field manager kube-controller-manager's
// controllers write the objects they create with (the API server takes it
// from their user agent).
const ControllerManager = "kube-controller-manager"

// NewJudge returns a JudgeFunc that runs an admission handler made with o
// (sharing its inspector and caches with the webhook's), whose Recorder
// hands the decisions back instead of recording them, whose Reviews is
// unset and which does not wait for owners: the Pod was created a while
// ago, so its owner is in the cache by now or will not be.
//
// The review it replays is sent by the Pod's creator as far as the Pod
// tells: a Pod whose managed fields name ControllerManager as a writer of
// the Pod itself is sent as by a controller identity of o (the first), so
// that the handler's standing rule (pkg/admission, standing.go) decides
// whether it inherits its owner's standing, as its review would have;
// any other Pod is sent by no identity and judged on its own. Managed
// fields are what the client said, not who it was: a Pod that claims the
// controller manager wrote it still inherits only where its live owner's
// template has exactly its images, and then runs nothing that owner does
// not.
func NewJudge(o admit.Options) (JudgeFunc, error) {
	o.Recorder, o.Reviews, o.OwnerWait = collector{}, nil, -1
	h, err := admit.NewHandler(o)
	if err != nil {
		return nil, err
	}
	ids := o.ControllerIdentities
	if ids == nil {
		ids = admit.DefaultControllerIdentities()
	}
	return func(ctx context.Context, pod *corev1.Pod) ([]events.Decision, error) {
		var sender authenticationv1.UserInfo
		if len(ids) > 0 && writtenBy(pod, ControllerManager) {
			sender.Username = ids[0]
		}
		obj := pod.DeepCopy()
		obj.APIVersion, obj.Kind = "v1", "Pod"
		raw, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		var got []events.Decision
		ctx = context.WithValue(ctx, collectorKey{}, &got)
		resp := h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       types.UID("judge-" + string(pod.UID)),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: pod.Namespace, Name: pod.Name, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}, UserInfo: sender,
		}})
		if !resp.Allowed && resp.Result != nil && resp.Result.Code != http.StatusForbidden {
			return nil, fmt.Errorf("judging pod %s/%s: %s", pod.Namespace, pod.Name, resp.Result.Message)
		}
		return got, nil
	}, nil
}

// writtenBy reports whether the managed fields of obj name manager as a
// writer of the object itself (not of a subresource such as status).
func writtenBy(obj metav1.Object, manager string) bool {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == manager && f.Subresource == "" {
			return true
		}
	}
	return false
}

// collector hands decisions to the slice in the context of the call.
type collector struct{}

type collectorKey struct{}

// Record implements admission.DecisionRecorder.
func (collector) Record(ctx context.Context, d events.Decision) {
	if got, ok := ctx.Value(collectorKey{}).(*[]events.Decision); ok {
		*got = append(*got, d)
	}
}
