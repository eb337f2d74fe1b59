// Package devcluster is the plumbing shared by slimgate's envtest suites
// and the demo: it finds and starts kube-apiserver and etcd with the CRD
// and webhook configuration of config/, runs the webhook in the
// background and waits for its readiness endpoint, builds clients that
// collect admission warnings, waits for a policy to be Ready, and serves
// in-process registries (optionally behind basic authentication) to push
// images with an exact history, or a real image's config, to. GoSDKApp and
// StaticApp are the two sample apps the suites judge, and Registries
// serves them from an open and a password-protected registry.
//
// ControllerManager runs kube-controller-manager against the same control
// plane, so that built-in workloads create their ReplicaSets, Jobs and
// Pods through the webhook as in a cluster, and Kubelet stands in for the
// missing nodes by reporting those Pods Ready.
//
// Its subpackage webhooktest runs the webhook itself (cmd/webhook/app).
//
// It is for tests and local tooling only; nothing in the webhook or the
// CLI imports it.
package devcluster
