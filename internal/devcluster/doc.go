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
// Its subpackage webhooktest runs the webhook itself (cmd/webhook/app).
//
// It is for tests and local tooling only; nothing in the webhook or the
// CLI imports it.
package devcluster
