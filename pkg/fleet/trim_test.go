package fleet

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestTrimPodKeepsWhatTheScanReads: the targets of a trimmed Pod are
// those of the whole Pod, and what the scan does not read is gone.
func TestTrimPodKeepsWhatTheScanReads(t *testing.T) {
	p := pod("web-a", &corev1.Pod{ObjectMeta: objMeta("owner", nil)}, "web:1", "side:1")
	p.Annotations = map[string]string{"big": "annotation"}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "B"}}
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "init:1", Command: []string{"sh"}}}
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "busybox"}}}
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "data:1"}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.ServiceAccountName = "builder"
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", ImageID: "docker.io/library/web@" + digestA, Ready: true}}
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", ImageID: "docker.io/library/init@" + digestB}}
	p.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "dbg", ImageID: "docker.io/library/busybox@" + digestB}}

	got, err := TrimPod(p)
	if err != nil {
		t.Fatal(err)
	}
	tp := got.(*corev1.Pod)
	whole, trimmed := Workload{Pods: []*corev1.Pod{p}}, Workload{Pods: []*corev1.Pod{tp}}
	if diff := cmp.Diff(Targets(&whole), Targets(&trimmed)); diff != "" {
		t.Errorf("targets of the trimmed Pod differ (-whole +trimmed):\n%s", diff)
	}
	if tp.Annotations != nil || tp.Spec.Containers[0].Env != nil || tp.Status.Conditions != nil || len(tp.Spec.Volumes) != 1 ||
		tp.Spec.InitContainers[0].Command != nil || tp.Status.ContainerStatuses[0].Ready {
		t.Errorf("trimmed Pod kept what the scan does not read: %+v", tp)
	}
	if tp.Spec.ServiceAccountName != "builder" || len(tp.Spec.ImagePullSecrets) != 1 || len(tp.OwnerReferences) != 1 || tp.UID != p.UID {
		t.Errorf("trimmed Pod lost credentials or identity: %+v", tp)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{"a": "b"}}}
	if same, _ := TrimPod(ns); same != ns {
		t.Error("TrimPod changed an object that is not a Pod")
	}
}
