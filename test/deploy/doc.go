// Package deploy tests what users install: the Helm chart in
// charts/slimgate and the kustomize configuration in config/default. It
// lints and renders them with helm and kustomize, applies the output with
// server-side dry-run to a real kube-apiserver (envtest), and runs the
// webhook as the chart's ServiceAccount under the chart's RBAC, so that a
// missing permission fails a test.
//
// helm and kustomize are found through $SLIMGATE_HELM and
// $SLIMGATE_KUSTOMIZE (set by `make test`), then in bin/, then on $PATH.
// Without them the tests skip, except under CI=true where they fail.
package deploy
