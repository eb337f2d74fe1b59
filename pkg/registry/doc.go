// Package registry turns image references into image facts: it fetches the
// manifest and config blob (never layers) from registries and local image
// layouts, with authentication, caching, size limits and an egress guard.
package registry
