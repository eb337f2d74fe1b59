// Package controller holds slimgate's controllers. PolicyStatusReconciler
// reports on each SlimImagePolicy whether the webhook applies it: its
// Ready condition is True once the webhook's cache holds the policy and
// the policy validates, False with the validation errors otherwise.
//
// UnreviewedPodReconciler notices Pods created without a review (the
// webhook could not be reached and its failurePolicy Ignore let them in):
// each replica logs the Pod creations it reviews (ReviewLog) and publishes
// them for the others (ReviewPublisher), and a Pod no record holds is
// judged as the review would have judged it and recorded as unreviewed.
package controller
