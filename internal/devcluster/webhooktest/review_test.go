package webhooktest

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodReview is a review the API server could have sent: kind, resource,
// names and the object agree, and the caller's Pod is left as it was.
func TestPodReview(t *testing.T) {
	in := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(PodReview(t, "uid-1", in), &review); err != nil {
		t.Fatal(err)
	}
	r := review.Request
	if review.Kind != "AdmissionReview" || r == nil || r.UID != "uid-1" || r.Kind.Kind != "Pod" || r.Resource.Resource != "pods" ||
		r.Namespace != "team" || r.Name != "web" || r.Operation != admissionv1.Create || r.UserInfo.Username == "" {
		t.Fatalf("review %+v", review)
	}
	var got corev1.Pod
	if err := json.Unmarshal(r.Object.Raw, &got); err != nil {
		t.Fatal(err)
	}
	want := in.DeepCopy()
	want.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("object (-want +got):\n%s", diff)
	}
	if in.Kind != "" {
		t.Errorf("PodReview set the caller's TypeMeta: %+v", in.TypeMeta)
	}
}
