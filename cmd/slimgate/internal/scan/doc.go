// Package scan is the "slimgate scan" command: it judges the workloads
// that run in a cluster under a policy, as the admission webhook would
// judge their creation, and sums up what it finds per namespace. It needs
// nothing installed: it reads the cluster with the caller's kubeconfig
// (client-go's loading rules, as kubectl), the images with the registry
// client of "slimgate check", and judges them with the webhook's engine
// (pkg/fleet over pkg/admission).
//
// It lives in its own package so that "slimgate check" links no
// Kubernetes client: the command's dependency test keeps client-go and
// controller-runtime out of every package check reaches.
package scan
