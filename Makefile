# slimgate: `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

BIN ?= $(CURDIR)/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen
FUZZTIME ?= 10s
# The fuzz targets `make test` runs briefly, as package:target.
FUZZ_TARGETS ?= ./pkg/policy:FuzzLoad ./pkg/policy:FuzzEvaluateHistory

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

.PHONY: test
test: ## Run everything: unit, integration and end-to-end tests, then each fuzz target briefly.
	@assets="$$(hack/envtest-assets.sh)"; \
	hack/install-registry.sh || [ "$${CI:-}" != true ]; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -count=1 ./...
	@for t in $(FUZZ_TARGETS); do \
		pkg="$${t%%:*}"; name="$${t##*:}"; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test "$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

.PHONY: test-e2e
test-e2e: ## Run the end-to-end tests against a real kube-apiserver and etcd.
	@assets="$$(hack/envtest-assets.sh)"; \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -count=1 -v ./test/e2e/...

.PHONY: bench
bench: ## Run the Go benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate deepcopy code, the CRD and RBAC with controller-gen.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	@if [ -d pkg/admission ]; then $(CONTROLLER_GEN) rbac:roleName=slimgate paths=./cmd/... paths=./pkg/... output:rbac:artifacts:config=config/rbac; fi

.PHONY: lint
lint: ## gofmt, go vet, and a check that generated files are current.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(MAKE) manifests
	git diff --exit-code -- api config || (echo "generated files are stale: run make manifests"; exit 1)

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
