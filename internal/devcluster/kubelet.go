package devcluster

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kubelet stands in for the kubelets of a control plane without nodes:
// it reports every Pod of one namespace running and Ready through the
// status subresource, as a kubelet does once the containers have started,
// so that the ReplicaSets and Deployments of a test become available. It
// starts nothing and pulls no image.
type Kubelet struct {
	// Client writes Pod status (pods/status update).
	Client client.Client
	// Namespace is the namespace whose Pods it reports.
	Namespace string
	// Every is the time between two passes; 0: 100ms.
	Every time.Duration
	// ImageID, when set, gives the image ID each container status reports
	// for its image (a kubelet reports the repository and digest it
	// pulled; RegistryImageID asks the registry); init containers are then
	// reported completed. "" reports none.
	ImageID func(ctx context.Context, image string) string
}

// Run reports Pods Ready until ctx ends; it returns nil then, or the error
// of a list that failed.
func (k Kubelet) Run(ctx context.Context) error {
	every := k.Every
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	for {
		if err := k.Pass(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// Pass reports Ready every Pod of the namespace that is not yet and is not
// being deleted. A Pod changed meanwhile (a conflict) or gone is left for
// the next pass.
func (k Kubelet) Pass(ctx context.Context) error {
	var pods corev1.PodList
	if err := k.Client.List(ctx, &pods, client.InNamespace(k.Namespace)); err != nil {
		return fmt.Errorf("listing the pods of %s: %w", k.Namespace, err)
	}
	now := metav1.Now()
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil || !MarkReady(pod, now) {
			continue
		}
		if k.ImageID != nil {
			reportImageIDs(ctx, pod, k.ImageID)
		}
		err := k.Client.Status().Update(ctx, pod)
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reporting pod %s/%s ready: %w", pod.Namespace, pod.Name, err)
		}
	}
	return nil
}

// MarkReady sets the status a kubelet reports for a Pod whose containers
// all run: phase Running, the conditions PodScheduled, Initialized,
// ContainersReady and Ready true, each container started and ready. It
// returns false, changing nothing, when the Pod is already Ready.
func MarkReady(pod *corev1.Pod, now metav1.Time) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &now
	pod.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	started := true
	pod.Status.ContainerStatuses = make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return true
}

// reportImageIDs sets the image ID of each container status, and reports
// the init containers completed with theirs.
func reportImageIDs(ctx context.Context, pod *corev1.Pod, id func(context.Context, string) string) {
	for i := range pod.Status.ContainerStatuses {
		cs := &pod.Status.ContainerStatuses[i]
		cs.ImageID = id(ctx, cs.Image)
	}
	pod.Status.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: id(ctx, c.Image), Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}},
		})
	}
}

// RegistryImageID is a Kubelet.ImageID that asks the image's registry
// (plain HTTP, as the test registries speak) for the digest its reference
// names, and reports "repository@digest" as containerd does; "" when the
// registry does not answer.
func RegistryImageID(ctx context.Context, image string) string {
	ref, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		return ""
	}
	d, err := remote.Head(ref, remote.WithContext(ctx))
	if err != nil {
		return ""
	}
	return ref.Context().Name() + "@" + d.Digest.String()
}
