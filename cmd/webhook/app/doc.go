// Package app is the webhook server behind cmd/webhook: Options (bound to
// flags) and Run, which the end-to-end tests call in-process.
package app
