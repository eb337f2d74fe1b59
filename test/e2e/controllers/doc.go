// Package controllers runs slimgate's webhook in-process against a real
// kube-apiserver, etcd and kube-controller-manager, so that Deployments,
// ReplicaSets and Jobs create their children through the webhook as in a
// cluster, and checks that Enforce never breaks a workload admitted
// before it while a user still cannot borrow a controller's standing.
package controllers
