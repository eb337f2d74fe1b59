// Command slimgate checks container images against a SlimImagePolicy
// outside the cluster, for CI: the same registry inspection and policy
// engine as the admission webhook, on registry references, OCI image
// layouts (oci:PATH) and docker save archives (docker-archive:PATH).
//
// Usage:
//
//	slimgate check [flags] IMAGE...
//	slimgate version
//
// Exit status: 0 when every image is allowed, 1 when any is denied, 2 on
// usage errors or when an image's registry could not be read. An image
// that is itself invalid, or a reference to nothing, is denied
// (inspection.invalid), as the webhook denies it.
package main
