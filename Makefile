# Reactions: `make run` to try it, `make test` to check it. `make help` lists everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES := openjdk-17-jre-headless maven redis-server redis-tools wrk chromium fonts-noto-color-emoji prometheus nginx
# Asked for only when npm is missing: a Node.js from elsewhere (NodeSource's) brings its own.
NODE_PACKAGES := nodejs npm
BROWSER_TOOLS := tests/e2e/node_modules/.installed
WIDGET_TOOLS := widget/node_modules/.installed

.PHONY: .system-packages .node help setup widget run up down up-cluster down-cluster status test test-cluster test-faults lint fmt bench profile soak clean

help: ## List the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(VENV)/.installed deploy/kafka/lib/.copied $(BROWSER_TOOLS) widget ## Install what is missing: system packages, venv, Kafka jars, axe-core, TypeScript, terser

# The one source in widget/src/ makes the ES module and the classic script the reader serves
# (and the npm package ships), minified by terser; build.py rewrites only what changed, and a
# test fails when the committed files are stale.
widget: | $(VENV)/.installed $(WIDGET_TOOLS) ## Write the widget's ES module and classic script from widget/src/
	@$(PY) widget/build.py

.system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.node:
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "installing $(NODE_PACKAGES)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(NODE_PACKAGES) >/dev/null; \
	fi

# axe-core for the browser tests' accessibility audits and TypeScript for the check of the
# widget's declarations, exactly as the lockfile pins them.
$(BROWSER_TOOLS): tests/e2e/package.json tests/e2e/package-lock.json | .node
	npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
	@touch $@

# terser, which minifies the widget, exactly as the lockfile pins it.
$(WIDGET_TOOLS): widget/package.json widget/package-lock.json | .node
	npm ci --prefix widget --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.installed: pyproject.toml | .system-packages
	@[ -x $(PY) ] || $(shell command -v $(PYTHON) || echo python3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

deploy/kafka/lib/.copied: deploy/kafka/pom.xml | .system-packages
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/deploy/kafka/lib -DincludeScope=runtime
	@touch $@

run: setup ## Start Kafka, Redis, the three services and the nginx edge; Ctrl-C stops everything
	$(PY) -m deploy.local run

up: setup ## Start the stack in the background (starts only what is not running)
	$(PY) -m deploy.local up

down: ## Stop the background stack (safe to run twice)
	@if [ -x $(PY) ]; then $(PY) -m deploy.local down; else echo "nothing to stop"; fi

up-cluster: setup ## Scaled out in the background: 3 Kafka nodes, a Redis Cluster, 2+3+2 services
	$(PY) -m deploy.local up-cluster

down-cluster: ## Stop the scaled-out stack
	@if [ -x $(PY) ]; then $(PY) -m deploy.local down-cluster; else echo "nothing to stop"; fi

status: ## Show which parts of the stack are running
	@$(PY) -m deploy.local status

test: setup ## Run the whole test suite (starts its own Kafka and Redis)
	$(PY) -m pytest

# pyproject's addopts leave out the tests marked faults_full; this expression takes them back.
test-cluster: setup ## Exact counts on a 3-broker Kafka, a Redis Cluster and 3 aggregators
	$(PY) -m pytest tests/scale -m "cluster_full or not cluster_full"

test-faults: setup ## Run the whole fault-tolerance matrix in tests/faults (kills, restarts, wipes)
	$(PY) -m pytest tests/faults -m "faults_full or not faults_full"

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup ## Format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup ## Benchmark every path against same-run baselines (BENCH_QUICK=1: about 6 min)
	$(PY) -m bench run

profile: setup ## CPU flame graphs of ingest, aggregator and reader under the bench load (never inside make bench)
	$(PY) -m bench profile

soak: setup ## 10 minutes at ingest's maximum with new readers and page streams; memory over time (BENCH_QUICK=1: 2 min)
	$(PY) -m bench run --only soak

clean: down ## Remove the venv, the Kafka jars, axe-core and the local stack's data
	rm -rf $(VENV) deploy/kafka/lib tests/e2e/node_modules .run
