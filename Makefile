# Two commands matter: `make demo` (the whole pipeline, locally, offline) and
# `make test` (everything CI runs). Both do their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned here (not in pyproject's ranges) so a fresh venv
# gets the exact build the tests were written against.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/kubeclr/__init__.py)
IMAGE ?= ghcr.io/kubeclr/kubeclr
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

.PHONY: demo test test-unit lint docs venv dev tools image image-lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed
dev: $(BIN)/.installed-dev

## tools: system packages the integration tests drive (Pushgateway, Chromium)
tools:
	bash .ci/install-tools.sh

## demo: the smoke preset on the offline `sample` data, through kfp.local
demo: $(BIN)/.installed
	$(BIN)/simclr-pipeline run --local --preset smoke --output-dir outputs/demo

## lint: ruff (lint + format check), the import contracts, the generated config reference
lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m kubeclr.config.docs --check

## test: the checks above, then every test tier (unit, integration against real servers, e2e)
test: lint tools
	$(BIN)/python -m pytest -q

test-unit: $(BIN)/.installed-dev
	$(BIN)/python -m pytest -q tests/unit

## docs: regenerate docs/config.md from the config dataclasses
docs: $(BIN)/.installed
	$(BIN)/python -m kubeclr.config.docs

image:
	docker build -f images/Dockerfile --target gpu --build-arg VERSION=$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(IMAGE):$(VERSION) .
	docker build -f images/Dockerfile --target cpu --build-arg VERSION=$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(IMAGE):$(VERSION)-cpu .
	docker build -f images/Dockerfile --target serve --build-arg VERSION=$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(IMAGE):$(VERSION)-serve .

image-lint: $(BIN)/.installed-dev
	$(BIN)/hadolint images/Dockerfile

clean:
	rm -rf $(VENV) outputs build dist *.egg-info
