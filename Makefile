# keeper — every target does its own set-up (venv, pip, npm ci) and is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KEEPER := $(BIN)/keeper
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
BUILD_STAMP := build/contracts.json
DEMO_DIR ?= .devnet
PYTEST_ARGS ?=

.PHONY: setup demo test lint static unit integration faults network k8s bench contracts clean

setup: $(PY_STAMP) $(NPM_STAMP) $(BUILD_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BUILD_STAMP): $(PY_STAMP) $(NPM_STAMP) $(shell find contracts -name '*.sol' 2>/dev/null)
	$(BIN)/python -m keeper.contracts.solc

contracts: $(PY_STAMP) $(NPM_STAMP)
	$(BIN)/python -m keeper.contracts.solc

# The main job on the local devnet: bring it up, seed borrowers, crash prices, show who is
# under water, liquidate them all in one pass, end with the risk lab's summary and report, bring
# it down (also on failure or Ctrl-C).
# The key is anvil's public dev account 1, which owns the devnet's liquidator contract.
DEVNET_KEY := 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
demo: setup
	@set -euo pipefail; \
	k="$(KEEPER) devnet --state-dir $(DEMO_DIR)"; \
	trap "$$k down >/dev/null" EXIT; \
	rm -f $(DEMO_DIR)/keeper.sqlite*; \
	$$k up; \
	$$k scenario --borrowers 200 --seed 1; \
	$$k crash WETH=0.72 WBTC=0.85 --blocks 5; \
	echo; echo "== under water (Pool.getUserAccountData)"; \
	$$k underwater | head -n 12; \
	echo; echo "== keeper scan (the keeper's own book, confirmed on chain)"; \
	$(KEEPER) scan -c config/devnet.toml --limit 10; \
	echo; echo "== keeper run --once"; \
	KEEPER_PRIVATE_KEY=$(DEVNET_KEY) $(KEEPER) run -c config/devnet.toml --once; \
	echo; echo "== after: one pass liquidates each account once (50% close factor); what is left"; \
	echo "   is a second round (the 50% close factor), which the daemon (keeper run) takes on the"; \
	echo "   following blocks while it pays, or a position too small to pay for its gas"; \
	$(KEEPER) scan -c config/devnet.toml --limit 5; \
	echo; echo "== keeper risk (the crashed market: what the next drop would liquidate)"; \
	$(KEEPER) risk -c config/devnet.toml --out $(DEMO_DIR)/risk-report

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Static analysis of contracts/: Slither (offline, through solc-js; fails on an unexplained
# finding of medium or higher impact) and solhint (.solhint.json; fails on an error).
# Slither lives in a venv of its own: it requires web3<8, and installed beside the keeper it
# would downgrade the keeper's web3 and websockets.
SLITHER_VENV := .venv-slither
SLITHER_PIN := slither-analyzer==0.11.6
$(SLITHER_VENV)/.installed: Makefile
	test -x $(SLITHER_VENV)/bin/python || $(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/python -m pip install -q '$(SLITHER_PIN)'
	touch $@

static: setup $(SLITHER_VENV)/.installed
	SLITHER=$(SLITHER_VENV)/bin/slither $(BIN)/python ops/static/slither_check.py
	npx --no-install solhint 'contracts/**/*.sol'

unit: setup
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -q tests/integration tests/e2e $(PYTEST_ARGS)

# The daemon through a faulty node during a crash (tests/faults, issue 10), alone.
faults: setup
	$(BIN)/pytest -q -m faults $(PYTEST_ARGS)

# The keeper network against real etcd members (tests/cluster, issue 12), alone.
network: setup
	$(BIN)/pytest -q -m network $(PYTEST_ARGS)

# The Kubernetes manifests of the keeper network, rendered offline by kubectl (no API server
# here for --dry-run=client); tests/unit/test_ops_cluster.py checks them against the schema.
k8s:
	@if command -v kubectl >/dev/null; then kubectl kustomize ops/cluster/k8s >/dev/null \
	  && echo "ops/cluster/k8s: rendered by kubectl kustomize"; \
	else echo "warning: kubectl not installed; ops/cluster/k8s checked by tests only" >&2; fi

# Every test, the fault-injection and network suites included. Most run on two workers
# (pytest-xdist); those that race a live chain in real time (marker `serial`, tests/conftest.py)
# then run one at a time, so that no other test takes their CPU. The build caches are made
# first (the workers would otherwise all make them at once). The slow groups also run alone:
# `make faults`, `make network`; `make test PYTEST_MARKERS="not faults"` skips one.
PYTEST_MARKERS ?=
AND_MARKERS := $(if $(PYTEST_MARKERS), and ($(PYTEST_MARKERS)))
test: lint static k8s
	$(BIN)/python -m tests.warm_caches
	@rc=0; \
	$(BIN)/pytest -q -n 2 -m "not serial$(AND_MARKERS)" $(PYTEST_ARGS) || [ $$? -eq 5 ] || rc=1; \
	$(BIN)/pytest -q -m "serial$(AND_MARKERS)" $(PYTEST_ARGS) || [ $$? -eq 5 ] || rc=1; \
	exit $$rc

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf build .devnet .pytest_cache .mypy_cache .ruff_cache
