// Package events records slimgate's admission decisions: events.k8s.io/v1
// Events regarding the workload a user created, related to the policy that
// judged it, and the slimgate_decisions_total Prometheus counter.
package events
