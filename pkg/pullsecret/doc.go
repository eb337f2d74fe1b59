// Package pullsecret builds registry credentials for a Pod from Kubernetes:
// the Pod's imagePullSecrets and those of its service account, as the
// kubelet would use them, with a scope that names the credential set.
//
// It is the one registry-related package that needs a Kubernetes client,
// kept apart so that the CLI, which never reads a cluster, does not link
// client-go.
package pullsecret
