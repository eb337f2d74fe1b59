package admission

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPodSpecOfEveryKind: each judged kind's typed object yields its
// spec, path and kind from the one table; other objects none.
func TestPodSpecOfEveryKind(t *testing.T) {
	kinds := Kinds()
	if len(kinds) != len(judgedKinds) {
		t.Fatalf("Kinds() lists %d kinds, the table %d", len(kinds), len(judgedKinds))
	}
	for i, k := range judgedKinds {
		obj := k.newObject()
		spec := k.podSpec(obj, true)
		spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
		got, path, gvk, ok := PodSpecOf(obj)
		if !ok || gvk != kinds[i] || path != k.path || got == nil || got.Containers[0].Image != "app:1" {
			t.Errorf("PodSpecOf(%T) = %v, %q, %v, %v; want its spec at %q as %v", obj, got, path, gvk, ok, k.path, kinds[i])
		}
	}
	if _, _, _, ok := PodSpecOf(&corev1.Namespace{}); ok {
		t.Error("PodSpecOf(Namespace) is ok, want not")
	}
}
