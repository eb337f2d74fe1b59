// Package controller holds slimgate's controllers. PolicyStatusReconciler
// reports on each SlimImagePolicy whether the webhook applies it: its
// Ready condition is True once the webhook's cache holds the policy and
// the policy validates, False with the validation errors otherwise.
package controller
