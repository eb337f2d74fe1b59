// Package policy decides whether an image is a slim runtime image or a build
// environment shipped to production. It is pure: image facts and a policy in,
// findings out; no network, no clock, no Kubernetes client.
package policy
