# slimgate: `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

BIN ?= $(CURDIR)/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Tools, each pinned and built from the Go module proxy into bin/ as
# NAME-VERSION with bin/NAME linked to it (go-install-tool below): a new
# version builds a new binary, and the old one is never used by mistake.
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
# helm and kustomize for the chart and config/ tests (kustomize v5.8.3
# needs go 1.27).
HELM_VERSION ?= v3.22.0
HELM := $(BIN)/helm-$(HELM_VERSION)
KUSTOMIZE_VERSION ?= v5.8.2
KUSTOMIZE := $(BIN)/kustomize-$(KUSTOMIZE_VERSION)
# golangci-lint for `make lint` (configuration: .golangci.yml); a cold
# build takes a few minutes.
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# The fuzz targets `make test` runs briefly, as package:target:inputs
# (about 5 s each on 2 cores). Counts, not durations: with go1.26 a
# -fuzztime duration can end in a spurious "context deadline exceeded"
# failure when a worker is mid-input at the deadline (golang/go#75804,
# fixed in go1.27); and the minimisation of each new interesting input is
# bounded (by default it may take a minute, in which nothing is fuzzed).
FUZZ_TARGETS ?= ./pkg/policy:FuzzLoad:10000x ./pkg/policy:FuzzEvaluateHistory:20000x ./pkg/policy:FuzzShellReader:40000x ./pkg/glob:FuzzGlob:200000x ./pkg/admission:FuzzAdmissionReview:1000x
FUZZMINIMIZE ?= 50x

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the webhook and the CLI into bin/.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/slimgate ./cmd/slimgate
	@if [ -d cmd/webhook ]; then $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/webhook ./cmd/webhook; fi

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from the Go module proxy (cached per version).
	@hack/envtest-assets.sh

.PHONY: registry-server
registry-server: ## Install the distribution registry server (Debian docker-registry) for integration tests.
	@hack/install-registry.sh

# `make test` runs the packages twice: once as built for production,
# where the tests of hostile input assert allocations and time (the race
# detector changes both: sync.Pool drops its items, so regexp allocates
# anew on every match, and code runs several times slower), and once with
# -race, every package but the pure, single-threaded ones (RACE_SKIP) and
# the chart rendering. The end-to-end suites (PLAIN_SKIP) assert behaviour,
# not allocations, so they run once, with -race (they are the slowest
# packages: about 3 minutes each pass). The first -race run builds the
# dependencies with race instrumentation (several minutes cold). The fuzz
# targets run last, without it.
RACE_SKIP ?= /pkg/policy$$|/pkg/glob$$|/pkg/image$$|/test/deploy$$
RACE_PKGS = $(shell $(GO) list ./... | grep -Ev '$(RACE_SKIP)')
PLAIN_SKIP ?= /test/e2e(/|$$)
PLAIN_PKGS = $(shell $(GO) list ./... | grep -Ev '$(PLAIN_SKIP)')

.PHONY: test
test: $(HELM) $(KUSTOMIZE) ## Run everything (unit, integration), again with -race, with it the end-to-end suites, then each fuzz target briefly.
	@assets="$$(hack/envtest-assets.sh)"; \
	hack/install-registry.sh || [ "$${CI:-}" != true ]; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	export KUBEBUILDER_ASSETS="$$assets" SLIMGATE_HELM=$(HELM) SLIMGATE_KUSTOMIZE=$(KUSTOMIZE); \
	$(GO) test -count=1 $(PLAIN_PKGS) && \
	echo "again with the race detector, the end-to-end suites for the first time:" && \
	$(GO) test -race -count=1 $(RACE_PKGS)
	@for t in $(FUZZ_TARGETS); do \
		pkg="$${t%%:*}"; rest="$${t#*:}"; name="$${rest%%:*}"; inputs="$${rest#*:}"; \
		echo "fuzz $$pkg $$name, -fuzztime $$inputs"; \
		$(GO) test "$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime "$$inputs" -fuzzminimizetime $(FUZZMINIMIZE) || exit 1; \
	done

# The edit-test loop: every package but test/ (API server, helm) in -short
# mode, in which tests that need an API server or a registry server skip
# (TestRealRegistryWithPullSecrets starts one; it has no -short check of
# its own). Go's test cache applies: unchanged packages are not rerun.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v '/test/')
UNIT_SKIP ?= ^TestRealRegistryWithPullSecrets$$

.PHONY: test-unit
test-unit: ## Run the fast tests (no API server, no registry server, no helm): under 30 s warm on 2 cores.
	$(GO) test -short -skip '$(UNIT_SKIP)' $(UNIT_PKGS)

.PHONY: test-e2e
test-e2e: ## Run the end-to-end tests against a real kube-apiserver and etcd.
	@assets="$$(hack/envtest-assets.sh)"; \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -count=1 -v ./test/e2e/...

.PHONY: demo
demo: ## Run slimgate for real: local kube-apiserver + etcd, in-process registry and webhook, sample workloads (DEMO_FLAGS=-short for CI).
	@echo "demo: kube-apiserver and etcd come from hack/envtest-assets.sh: built from the Go module proxy on first use (about 8 minutes on 2 cores), cached afterwards."
	@start=$$SECONDS; assets="$$(hack/envtest-assets.sh)"; \
	echo "demo: kube-apiserver and etcd ready after $$((SECONDS - start))s."; \
	KUBEBUILDER_ASSETS="$$assets" $(GO) run ./hack/demo $(DEMO_FLAGS)

BENCH_OUT ?= $(BIN)/bench
# The measurements behind docs/benchmarks.md (ratios to floors measured in
# the same run), run one package at a time so they do not compete for CPU.
BENCH_FIGURES := ^(TestWarmRatio|TestLoad|TestFanInFetchesOnce|TestColdRatio|TestCacheScale)$$
# The rollout measurement runs on kube-apiserver, etcd and
# kube-controller-manager (hack/envtest-assets.sh).
BENCH_ROLLOUT := ^TestRolloutRatio$$

.PHONY: bench
bench: ## Run the benchmarks and measurements of docs/benchmarks.md (about 5 minutes); output in bin/bench/.
	@mkdir -p $(BENCH_OUT)
	$(GO) test -p 1 -run '^$$' -bench . -benchmem ./pkg/... | tee $(BENCH_OUT)/benchmarks.txt
	@status=0; \
	SLIMGATE_BENCH=1 $(GO) test -p 1 -count=1 -v -timeout 20m -run '$(BENCH_FIGURES)' ./pkg/admission ./pkg/registry | tee $(BENCH_OUT)/figures.txt || status=$$?; \
	assets="$$(hack/envtest-assets.sh)"; \
	SLIMGATE_BENCH=1 KUBEBUILDER_ASSETS="$$assets" $(GO) test -count=1 -v -timeout 20m -run '$(BENCH_ROLLOUT)' ./test/e2e/controllers | tee -a $(BENCH_OUT)/figures.txt || status=$$?; \
	$(GO) test -run '^$$' -bench '^BenchmarkAdmitWarm$$' -benchtime 3s -cpuprofile $(BENCH_OUT)/admit-warm.cpu -o $(BENCH_OUT)/admission.test ./pkg/admission >/dev/null; \
	$(GO) tool pprof -top -cum $(BENCH_OUT)/admission.test $(BENCH_OUT)/admit-warm.cpu 2>/dev/null | head -60 > $(BENCH_OUT)/admit-warm.top.txt; \
	echo; grep -h '^\(goos\|goarch\|cpu\):' $(BENCH_OUT)/benchmarks.txt | sort -u; \
	grep -h -o 'FIGURE.*' $(BENCH_OUT)/figures.txt; \
	if [ $$status -ne 0 ]; then echo "bench: a target was missed (see FAIL above and docs/benchmarks.md)"; fi; \
	exit $$status

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate deepcopy code, the CRD (and the chart's copy) and RBAC with controller-gen.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	cp config/crd/bases/slimgate.dev_*.yaml charts/slimgate/crds/
	$(CONTROLLER_GEN) crd paths=github.com/openreports/reports-api/apis/openreports.io/v1alpha1 output:crd:dir=config/crd/openreports
	rm -f config/crd/openreports/openreports.io_clusterreports.yaml
	{ echo '{{- if .Values.reports.installCRD }}'; sed '/^metadata:/a\  labels:\n    {{- include "slimgate.labels" . | nindent 4 }}' config/crd/openreports/openreports.io_reports.yaml; echo '{{- end }}'; } > charts/slimgate/templates/reports-crd.yaml
	@if [ -d pkg/admission ]; then $(CONTROLLER_GEN) rbac:roleName=slimgate paths=./cmd/... paths=./pkg/... paths=./internal/... output:rbac:artifacts:config=config/rbac; fi

.PHONY: lint
lint: $(GOLANGCI_LINT) $(CONTROLLER_GEN) ## golangci-lint (.golangci.yml), gofmt, go vet, and a check that generated files are current.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	$(MAKE) manifests
	git diff --exit-code -- api config charts || (echo "generated files are stale: run make manifests"; exit 1)

.PHONY: test-deploy
test-deploy: $(HELM) $(KUSTOMIZE) ## Test the Helm chart and config/ (lint, render, dry-run, RBAC) against a real API server.
	@assets="$$(hack/envtest-assets.sh)"; \
	KUBEBUILDER_ASSETS="$$assets" SLIMGATE_HELM=$(HELM) SLIMGATE_KUSTOMIZE=$(KUSTOMIZE) $(GO) test -count=1 -v ./test/deploy/...

.PHONY: tools
tools: $(CONTROLLER_GEN) $(HELM) $(KUSTOMIZE) $(GOLANGCI_LINT) ## Build controller-gen, helm, kustomize and golangci-lint into bin/.
	@ln -sf $(notdir $(CONTROLLER_GEN)) $(BIN)/controller-gen
	@ln -sf $(notdir $(HELM)) $(BIN)/helm
	@ln -sf $(notdir $(KUSTOMIZE)) $(BIN)/kustomize
	@ln -sf $(notdir $(GOLANGCI_LINT)) $(BIN)/golangci-lint

# $(call go-install-tool,NAME,PACKAGE,VERSION) builds PACKAGE@VERSION from
# the module proxy into bin/NAME-VERSION and links bin/NAME to it, as
# kubebuilder's Makefile does.
define go-install-tool
@set -e; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
echo "building $(2)@$(3) into $(BIN)/$(1)-$(3)"; \
GOBIN="$$tmp" $(GO) install "$(2)@$(3)"; \
mkdir -p "$(BIN)"; mv "$$tmp/$(1)" "$(BIN)/$(1)-$(3)"; ln -sf "$(1)-$(3)" "$(BIN)/$(1)"
endef

$(HELM):
	$(call go-install-tool,helm,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

$(KUSTOMIZE):
	$(call go-install-tool,kustomize,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

$(CONTROLLER_GEN):
	$(call go-install-tool,controller-gen,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_GEN_VERSION))

$(GOLANGCI_LINT):
	$(call go-install-tool,golangci-lint,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))
