package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/exception"
)

// +kubebuilder:rbac:groups=slimgate.dev,resources=slimimageexceptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=slimgate.dev,resources=slimimageexceptions/status,verbs=update;patch

// States of the slimgate_exceptions gauge.
const (
	StateActive   = "active"
	StateExpiring = "expiring"
	StateExpired  = "expired"
)

// Reasons of a SlimImageException's conditions.
const (
	ReasonInEffect = "InEffect"
	ReasonExpired  = "Expired"
)

// ExceptionReconciler keeps a SlimImageException's status and the
// slimgate_exceptions{state} gauge right: Active (True until expires) and
// Expired (True from then on) conditions, and the exception counted as
// active, expiring (within exception.ExpiringWithin of its expiry) or
// expired. It requeues each exception for the moment its state changes.
// Admission does not wait for it: reviews compare expires with their own
// clock.
type ExceptionReconciler struct {
	// Client reads exceptions (the manager's cache) and writes their status.
	Client client.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	gauge  *prometheus.GaugeVec
	mu     sync.Mutex
	states map[types.NamespacedName]string
}

// SetupWithManager registers the reconciler, and the gauge with reg; it
// also makes the manager's cache watch SlimImageExceptions, which
// admission reads.
func (r *ExceptionReconciler) SetupWithManager(mgr ctrl.Manager, reg prometheus.Registerer) error {
	if err := r.init(reg); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.SlimImageException{}).Named("slimimageexception-status").Complete(r)
}

// init creates the gauge and registers it with reg (nil: not registered).
func (r *ExceptionReconciler) init(reg prometheus.Registerer) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	r.states = map[types.NamespacedName]string{}
	r.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "slimgate_exceptions",
		Help: "SlimImageExceptions by state: active, expiring (within 7 days of its expiry) or expired.",
	}, []string{"state"})
	for _, s := range []string{StateActive, StateExpiring, StateExpired} {
		r.gauge.WithLabelValues(s).Set(0)
	}
	if reg != nil {
		if err := reg.Register(r.gauge); err != nil {
			return fmt.Errorf("registering slimgate_exceptions: %w", err)
		}
	}
	return nil
}

// Reconcile implements reconcile.Reconciler.
func (r *ExceptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var e v1alpha1.SlimImageException
	if err := r.Client.Get(ctx, req.NamespacedName, &e); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.count(req.NamespacedName, "")
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if e.DeletionTimestamp != nil {
		r.count(req.NamespacedName, "")
		return ctrl.Result{}, nil
	}
	now := r.Now()
	c := exception.Compile(&e)
	state, next := StateExpired, time.Duration(0)
	switch {
	case c.ExpiringAt(now):
		state, next = StateExpiring, c.Expires.Sub(now)
	case c.ActiveAt(now):
		state, next = StateActive, c.Expires.Add(-exception.ExpiringWithin).Sub(now)
	}
	r.count(req.NamespacedName, state)
	if err := r.setConditions(ctx, &e, state != StateExpired); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// setConditions writes the Active and Expired conditions when they
// differ from the object's.
func (r *ExceptionReconciler) setConditions(ctx context.Context, e *v1alpha1.SlimImageException, active bool) error {
	at := e.Spec.Expires.UTC().Format(time.RFC3339)
	activeCond := metav1.Condition{Type: v1alpha1.ExceptionActive, Status: metav1.ConditionTrue, Reason: ReasonInEffect,
		Message: "waives findings until " + at, ObservedGeneration: e.Generation}
	expiredCond := metav1.Condition{Type: v1alpha1.ExceptionExpired, Status: metav1.ConditionFalse, Reason: ReasonInEffect,
		Message: "expires at " + at, ObservedGeneration: e.Generation}
	if !active {
		activeCond.Status, activeCond.Reason, activeCond.Message = metav1.ConditionFalse, ReasonExpired, "expired at "+at+"; waives nothing"
		expiredCond.Status, expiredCond.Reason, expiredCond.Message = metav1.ConditionTrue, ReasonExpired, "expired at "+at
	}
	changed := e.Status.ObservedGeneration != e.Generation
	for _, c := range []metav1.Condition{activeCond, expiredCond} {
		changed = meta.SetStatusCondition(&e.Status.Conditions, c) || changed
	}
	if !changed {
		return nil
	}
	e.Status.ObservedGeneration = e.Generation
	if err := r.Client.Status().Update(ctx, e); err != nil {
		return fmt.Errorf("updating status of %s/%s: %w", e.Namespace, e.Name, err)
	}
	return nil
}

// count records an exception's state ("": gone) and sets the gauge.
func (r *ExceptionReconciler) count(key types.NamespacedName, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.states[key]; ok {
		r.gauge.WithLabelValues(old).Dec()
	}
	if state == "" {
		delete(r.states, key)
		return
	}
	r.states[key] = state
	r.gauge.WithLabelValues(state).Inc()
}
