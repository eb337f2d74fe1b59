package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
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

// NewJudge returns a JudgeFunc that runs an admission handler made with o
// (sharing its inspector and caches with the webhook's), whose Recorder
// hands the decisions back instead of recording them and whose Reviews
// is unset.
func NewJudge(o admit.Options) (JudgeFunc, error) {
	o.Recorder, o.Reviews = collector{}, nil
	h, err := admit.NewHandler(o)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, pod *corev1.Pod) ([]events.Decision, error) {
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
			Object: runtime.RawExtension{Raw: raw},
		}})
		if !resp.Allowed && resp.Result != nil && resp.Result.Code != http.StatusForbidden {
			return nil, fmt.Errorf("judging pod %s/%s: %s", pod.Namespace, pod.Name, resp.Result.Message)
		}
		return got, nil
	}, nil
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
