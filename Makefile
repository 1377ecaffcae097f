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

.PHONY: demo test test-unit lint docs venv dev lock tools image image-lint clean

# Every install runs under the two locks (constraints): the venv gets exactly
# the dependency set the image ships plus pinned dev tools, whatever the index
# serves today. `make lock` is the one deliberate way to move them.
LOCKS := images/requirements.lock images/requirements-dev.lock
CONSTRAINTS := $(foreach f,$(LOCKS),--constraint $(f))
PIP := $(BIN)/pip install -q $(CONSTRAINTS)

$(BIN)/.installed: pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) pip setuptools
	$(PIP) $(TORCH_PINS)
	$(PIP) --no-build-isolation -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(PIP) --no-build-isolation -e '.[dev,bench]'
	touch $@

venv: $(BIN)/.installed
dev: $(BIN)/.installed-dev

## lock: re-resolve the dependencies from pyproject's ranges (deliberately: this reads
## what the index serves today) in a scratch venv, rewrite both locks, check them
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip setuptools
	.venv-lock/bin/pip install -q $(TORCH_PINS)
	.venv-lock/bin/pip install -q --no-build-isolation -e '.[dev,bench,serve]'
	.venv-lock/bin/python images/lock.py
	.venv-lock/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_images.py -k lock
	rm -rf .venv-lock
	@echo "locks rewritten: review 'git diff images/*.lock', then run make test (it rebuilds .venv under them)"

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
	rm -rf $(VENV) .venv-lock outputs build dist *.egg-info
