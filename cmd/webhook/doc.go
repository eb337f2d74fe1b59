// Command webhook is slimgate's admission webhook server: a
// controller-runtime manager serving the validating webhook over TLS from a
// certificate folder (reloaded on change) that cert-manager fills or, with
// --cert-rotation, that the webhook fills itself from the CA and serving
// certificate it issues and rotates (open-policy-agent/cert-controller);
// with health probes, Prometheus metrics and a small controller reporting
// each SlimImagePolicy's status. main only parses flags into app.Options
// and calls app.Run.
package main
