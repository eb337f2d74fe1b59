package exception

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Workloads returns the workloads an object of this kind belongs to, for
// an exception's spec.workloads: the object itself (when it has a name),
// its controller (the owner reference marked controller), and, for a Pod,
// the workload that controller's controller is by the names Kubernetes
// gives: a Deployment's ReplicaSet is named <deployment>-<pod-template-hash>,
// a CronJob's Job <cronjob>-<scheduled minute>.
//
// Owner references are written by whoever creates the object, so this is
// no boundary inside a namespace: whoever can create a Pod there can also
// name a Deployment as the exception does. Namespaces and the image
// criteria are the boundary.
func Workloads(kind string, obj metav1.Object) []Workload {
	var out []Workload
	if obj.GetName() != "" {
		out = append(out, Workload{Kind: kind, Name: obj.GetName()})
	}
	owner := metav1.GetControllerOfNoCopy(obj)
	if owner == nil {
		return out
	}
	out = append(out, Workload{Kind: owner.Kind, Name: owner.Name})
	if kind != "Pod" {
		return out
	}
	switch owner.Kind {
	case "ReplicaSet":
		if hash := obj.GetLabels()["pod-template-hash"]; hash != "" {
			if d, ok := strings.CutSuffix(owner.Name, "-"+hash); ok && d != "" {
				out = append(out, Workload{Kind: "Deployment", Name: d})
			}
		}
	case "Job":
		if i := strings.LastIndexByte(owner.Name, '-'); i > 0 && allDigits(owner.Name[i+1:]) {
			out = append(out, Workload{Kind: "CronJob", Name: owner.Name[:i]})
		}
	}
	return out
}

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
