package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// +kubebuilder:rbac:groups=slimgate.dev,resources=slimimagepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=slimgate.dev,resources=slimimagepolicies/status,verbs=update;patch

// Condition type and reasons of a SlimImagePolicy's status.
const (
	ConditionReady = "Ready"
	ReasonAccepted = "Accepted"
	ReasonInvalid  = "Invalid"
)

// PolicyStatusReconciler sets a SlimImagePolicy's Ready condition: True
// once the webhook's cache holds the policy and policy.Validate accepts
// it, False with the validation errors otherwise.
type PolicyStatusReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler; it also makes the manager's
// cache watch SlimImagePolicies.
func (r *PolicyStatusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.SlimImagePolicy{}).Named("slimimagepolicy-status").Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *PolicyStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p v1alpha1.SlimImagePolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonAccepted,
		Message: "the webhook applies this policy", ObservedGeneration: p.Generation}
	if errs := policy.Validate(&p.Spec); len(errs) > 0 {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, errs.ToAggregate().Error()
	}
	old := meta.FindStatusCondition(p.Status.Conditions, ConditionReady)
	if p.Status.ObservedGeneration == p.Generation && old != nil && old.Status == cond.Status &&
		old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == p.Generation {
		return ctrl.Result{}, nil
	}
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	p.Status.ObservedGeneration = p.Generation
	if err := r.Client.Status().Update(ctx, &p); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating status of %s: %w", p.Name, err)
	}
	return ctrl.Result{}, nil
}
