// Package egress is the guard on what a registry client may contact: the
// registries a policy allows, the registries spoken to over plain HTTP,
// and, unless private networks are allowed, no loopback, private,
// link-local or other non-public address, checked on the host as written
// and again on every address actually dialled (after DNS, on every
// redirect).
//
// Every refusal matches ErrRefused with errors.Is, however deep in an
// HTTP stack it surfaces.
package egress
