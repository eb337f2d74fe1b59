// Package preview tells, before a change takes effect, which running
// workloads it would get denied: the way Pod Security Admission warns on
// its namespace labels.
//
// The scanning replica's Publisher judges every workload of every
// namespace the webhook reviews under each policy as if it were in
// Enforce mode and selected every namespace (the engine is cheap; the
// image facts come from the shared registry cache), and writes what each
// would deny into the policy's status.preview, bounded. Every replica
// reads the policies from its informer cache, so the two webhooks answer
// on any replica in milliseconds, without a registry request:
//
//   - NamespaceHandler, on a namespace's creation or label change (kubectl
//     label ns shop slimgate.dev/enabled=true --dry-run=server): the
//     workloads there that the Enforce policies its new labels select, and
//     its old labels did not, would deny.
//   - PolicyHandler, on a SlimImagePolicy's creation or a change to
//     Enforce, its selector or its rules: "Enforce would deny 12 workloads
//     in 4 namespaces", then the first of them.
//
// Both allow every request: they only warn.
package preview
