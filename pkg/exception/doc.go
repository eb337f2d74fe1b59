// Package exception applies SlimImageExceptions: namespaced, expiring
// waivers of SlimImagePolicy findings.
//
// An exception is compiled once (Compile) and then matched against each
// finding of a review (Covers, Find): which policy made it, which rule,
// which image (reference globs in slimgate's one glob dialect, or exact
// digests of what was judged), and optionally which workload and
// container. Whether an exception may waive a policy at all is the
// policy's to say (Gate): spec.exceptions.allowed, its namespaceSelector
// and its maxDuration. Time is always the caller's: nothing here reads a
// clock.
//
// Load reads exceptions from files for `slimgate check --exceptions`,
// strictly and validated as the CRD validates them.
package exception
