# Roomcast developer commands. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

HOST_PYTHON ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: help install run demo demo-build test unit lint format bench bench-peers soak soak-check conformance test-deps clean wheelhouse base-image image chart-lint

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(HOST_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,operator]'
	touch $@

$(JS_STAMP): tests/js/package.json
	cd tests/js && npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(JS_STAMP) ## Create .venv (and the JS SDK test client) with everything installed
	@true

run: $(STAMP) ## Serve on the memory engine and print how to connect
	$(VENV)/bin/roomcast serve --dev

demo: $(STAMP) ## The browser chat example and a Roomcast with the admin UI: http://127.0.0.1:8080
	$(PYTHON) examples/chat/demo.py $(DEMO_ARGS)

demo-build: ## Rebuild examples/chat/dist/chat.js from its TypeScript (type-checked, bundled)
	cd examples/chat && npm ci --no-audit --no-fund --loglevel=error && npm run build

test-deps: install ## Install what the tests need outside Python (redis-server, Kubernetes tools, Prometheus, prometheus-adapter)
	tests/deps.sh
	e2e/ci.sh >/dev/null
	tests/tools/prometheus.sh >/dev/null
	tests/tools/prometheus-adapter.sh >/dev/null
	tests/tools/monitoring-crds.sh >/dev/null

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PYTHON) -m roomcast_operator.crd --check

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: install ## Unit and integration tests (no Kubernetes)
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

# The e2e suite mostly waits (drains, rollouts, scaling windows), so the CPU-bound unit
# suite and the soak run beside it; make prints each one's report whole when it ends.
test: test-deps lint ## Install what the tests need, then run them all
	$(MAKE) --no-print-directory -j3 --output-sync=line unit e2e soak-check

CONFORMANCE_ARGS ?=
conformance: install ## The SDKs' own test suites (centrifuge-go, centrifuge-python) against Roomcast
	$(PYTHON) conformance/run.py $(CONFORMANCE_ARGS)

bench: install ## Benchmarks: results as JSON in bench/results/ plus a table
	$(PYTHON) bench/run.py $(BENCH_ARGS)

SOAK_MINUTES ?= 10
SOAK_OUT ?= reports/soak
soak: install ## Churn against a real server, memory and Redis engine side by side: RSS, fds, tasks, hub, presence as JSON + PNG in reports/soak
	$(PYTHON) -m tests.server.soak --engine memory --minutes $(SOAK_MINUTES) --out $(SOAK_OUT) & \
	memory=$$!; \
	$(PYTHON) -m tests.server.soak --engine redis --minutes $(SOAK_MINUTES) --out $(SOAK_OUT); \
	redis=$$?; wait $$memory && exit $$redis

# make test runs this beside the e2e suite (which mostly waits on its cluster), at a
# lower priority so the e2e suite keeps its pace; a leak fails it.
soak-check: install ## The 10-minute soak make test runs: everything back to its baseline
	nice -n 10 $(MAKE) --no-print-directory soak SOAK_MINUTES=10 SOAK_OUT=reports/soak-check

bench-peers: install ## Roomcast beside Centrifugo, socket.io, python-socketio and ws (builds them)
	$(PYTHON) bench/peers/compare.py $(BENCH_ARGS)

BASE_IMAGE ?= python:3.11-slim
IMAGE ?= roomcast:dev
HELM ?= $$(ls -d $${XDG_CACHE_HOME:-$$HOME/.cache}/roomcast/tools/*/bin | tail -n1)/helm

wheelhouse: $(STAMP) ## Build the wheels the image installs (images/wheelhouse)
	scripts/wheelhouse.sh

base-image: ## A local Debian 12 + Python base image made with debootstrap (no registry needed)
	images/base/build.sh roomcast-base:bookworm

image: wheelhouse ## Build the image (server and operator); BASE_IMAGE=roomcast-base:bookworm offline
	docker build -f server/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

chart-lint: $(STAMP) ## helm lint --strict and the chart's unit tests
	$(HELM) lint --strict helm/roomcast
	$(HELM) lint --strict helm/roomcast -f helm/roomcast/ci/production-values.yaml
	$(PYTHON) -m pytest tests/helm $(PYTEST_ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) tests/js/node_modules bench/peers/node_modules .mypy_cache .ruff_cache .pytest_cache

include e2e/bed.mk
