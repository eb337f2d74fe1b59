// Package registry turns image references into image facts: it fetches the
// manifest and config blob (never layers) from registries, with
// authentication, caching, size limits and an egress guard. Its Inspection,
// InspectionError, Reason and platform selection are shared with package
// local, which reads OCI image layouts and docker save archives.
//
// Remote is the registry Inspector. Its design in brief:
//
//   - Requests are its own, over ggcr's authenticating transport (ping,
//     token exchange): a tag is resolved with a manifest HEAD (GET when HEAD
//     gives no digest), then the manifest is read by digest and checked
//     against it, then the config blob, whose declared size is checked
//     before it is fetched. Every body read is capped mid-stream whatever
//     Content-Length says; documents with more JSON values than any real
//     image has are refused before they are decoded, and the configs being
//     read and decoded share one process-wide memory bound
//     (Options.MaxConfigBytesInFlight).
//   - An index is read whole (up to MaxIndexEntries) and SelectPlatforms
//     picks what a node would pull, placing entries without a platform by
//     their config; more images to judge than MaxPlatforms, or a nested
//     index, is the image's fault, never a silent cut.
//   - Reason.Invalid is the one table of whose failure each Reason is: the
//     image's (a violation) or the registry's (availability).
//   - The caller's context bounds everything; retries (network errors,
//     502/503/504, 429 with Retry-After) happen only when they fit in the
//     time left.
//   - Facts are cached by registry, repository and manifest digest
//     (bounded by entries and by the bytes they hold, no expiry). A
//     credential scope is served cached facts only after that registry
//     resolved the reference for that scope with its own credentials
//     (remembered for TagTTL), so one namespace never reads a private
//     image another namespace fetched, and no registry is answered with
//     another's facts by naming their digest. Failures are remembered per
//     reference, scope and egress rules for FailureTTL. Concurrent
//     requests for one reference share one fetch; one caller's deadline
//     does not end it for the others.
//   - The egress guard (package egress) checks registry patterns up front
//     and every dialled address (after DNS, on every redirect) at connect
//     time; plain HTTP is used only for registries listed as insecure.
//   - A per-registry circuit breaker fails fast after repeated failures
//     of the registry (never a caller's own deadline or cancellation).
//   - A registry with mirrors (Options.Mirrors, package mirrors) is read
//     from its mirror endpoints in order, then from itself unless
//     fallback is off (mirror.go): each endpoint with its own host's
//     credentials, under the request's egress rules and its own circuit
//     breaker; documents keep the upstream's cache keys.
//   - Metrics name a registry only when it is well known or named by
//     Options.MetricHosts; every other host is "other".
package registry
