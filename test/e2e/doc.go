// Package e2e runs slimgate's webhook in-process against a real
// kube-apiserver and etcd (envtest) and images in an in-process registry,
// and checks what a user would see: refusals, warnings and Events.
package e2e
