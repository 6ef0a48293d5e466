# Kubernetes test bed targets (see e2e/README.md).
# The root Makefile includes this fragment with `include e2e/bed.mk`; it defines only
# tools, cluster-up, cluster-down and e2e, and PYTHON when the root has not.

PYTHON ?= .venv/bin/python
E2E_PYTEST_ARGS ?=

.PHONY: tools cluster-up cluster-down e2e

tools: ## Build the pinned Kubernetes tool set from the Go module proxy (cached)
	e2e/tools/build.sh

cluster-up: ## Start the local Kubernetes test bed
	e2e/bed/up.sh

cluster-down: ## Stop the local Kubernetes test bed and every process it started
	e2e/bed/down.sh

e2e: ## Run the e2e suite (on the bed from cluster-up if KUBECONFIG points at it, else a private one)
	$(PYTHON) -m pytest e2e $(E2E_PYTEST_ARGS)
