// Package admission is slimgate's validating admission handler: it decodes
// Pods and the workloads that make them, lists the images a request adds,
// inspects them through a registry.Inspector, applies every SlimImagePolicy
// whose namespaceSelector matches, and answers with the strictest action:
// Enforce denies, Warn admits with warnings, Audit admits silently.
package admission
