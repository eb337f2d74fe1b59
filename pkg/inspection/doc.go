// Package inspection says why an image could not be inspected. Classify
// turns what the registry inspector returned, and whether the caller's own
// deadline passed, into a policy.Failure: one reason, one detail and
// whether the image itself is at fault (registry.Reason.Invalid), which
// slimgate check and the webhook word and judge the same way
// (policy.Failure.String, policy.InspectionFailed).
package inspection
