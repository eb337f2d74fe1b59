// Command webhook is slimgate's admission webhook server: a
// controller-runtime manager serving the validating webhook over TLS from a
// certificate folder (reloaded on change), with health probes, Prometheus
// metrics and a small controller reporting each SlimImagePolicy's status.
package main
