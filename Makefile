# r2r — two commands for a new user: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
STAGE ?= dev
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup chromium demo test test-unit test-integration test-infra test-e2e lint format synth deploy destroy local clean schemas catalog bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "first run: creating $(VENV) and installing r2r with its dev and infra dependencies"
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check pip==26.3 2>&1 | { grep -v '^WARNING: Location' || true; }
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e . --group dev 2>&1 | { grep -v '^WARNING: Location' || true; }
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (done on first run of any target)

demo: $(STAMP) ## run the sold-to-billed scenario on the embedded local stack and print the invoice
	@$(VENV)/bin/r2r local run events/scenarios/sold-to-billed --report .r2r/sold-to-billed.json

test: $(STAMP) chromium ## the whole suite: lint, unit, integration, infra, e2e
	@$(MAKE) --no-print-directory lint
	@# loadfile: a module (and its module-scoped local stack, e.g. the chaos run) runs on one worker, once.
	@$(PY) -m pytest -n 2 --dist loadfile tests

test-unit: $(STAMP)
	@$(PY) -m pytest tests/unit
test-integration: $(STAMP)
	@$(PY) -m pytest tests/integration
test-infra: $(STAMP)
	@$(PY) -m pytest tests/infra
test-e2e: $(STAMP)
	@$(PY) -m pytest tests/e2e

# The HTML report test opens the report in Debian's headless Chromium; a fresh machine lacks it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the report test needs Chromium: install Debian's 'chromium' package (sudo apt-get install chromium)" >&2; exit 1; \
	  fi; }

lint: $(STAMP) ## ruff and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy layers/core/python infra functions

format: $(STAMP)
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

# Not part of `make test`: measurements, not assertions. BENCH_ARGS="--quick" or "--only coldstart".
bench: $(STAMP) ## measure cold start, throughput, ERP calls, spike and cost (.r2r/bench/results.json|md)
	@$(PY) -m infra.bench $(BENCH_ARGS)

schemas: $(STAMP) ## regenerate events/schemas from the canonical model
	@$(PY) -m r2r_core.schema_export events/schemas

catalog: $(STAMP) ## regenerate docs/catalog.md and docs/catalog.json from the code and the template
	@$(VENV)/bin/r2r catalog --out-dir docs

synth: $(STAMP) ## synthesize the CDK app into cdk.out/ (layers bundled without Docker)
	@$(PY) -m infra.app --stage $(STAGE)

local: $(STAMP) ## run the embedded local stack in the foreground (Ctrl-C stops it)
	@$(VENV)/bin/r2r local up

deploy: $(STAMP) ## deploy to the AWS account in your environment with the aws-cdk CLI from npm
	@npx --yes aws-cdk@2 deploy --app "$(PY) -m infra.app" -c stage=$(STAGE) --require-approval broadening

destroy: $(STAMP) ## remove the deployed stack
	@npx --yes aws-cdk@2 destroy --app "$(PY) -m infra.app" -c stage=$(STAGE)

clean:
	rm -rf cdk.out .r2r .pytest_cache .mypy_cache .ruff_cache
