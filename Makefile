# ferrule's single entry point: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PY_DIRS := $(wildcard python tests examples benchmarks scripts)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z][a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS=":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

.PHONY: build-dev
build-dev: $(PY) ## create .venv, install test deps, build ferrule into it (release profile)
	$(PY) -m pip install --quiet -r requirements-test.txt
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release --quiet

.PHONY: format
format: ## format Rust and Python sources
	cargo fmt
	$(VENV)/bin/ruff format $(PY_DIRS)
	$(VENV)/bin/ruff check --fix $(PY_DIRS)

.PHONY: docs
docs: build-dev ## regenerate the README's option table from the CLI definition
	$(PY) scripts/update_readme_options.py README.md

.PHONY: lint-rust
lint-rust: ## cargo fmt --check, clippy -D warnings, rustdoc with warnings denied
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet

.PHONY: lint-python
lint-python: $(PY) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)

.PHONY: lint
lint: lint-rust lint-python ## all linters

.PHONY: test-rust
test-rust: ## Rust unit and integration tests
	cargo test --quiet

.PHONY: test-py
test-py: build-dev ## pytest: Python API and black-box tests against real processes
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest

.PHONY: test
test: test-rust test-py ## the whole suite (what .ci/run runs)

.PHONY: bench
bench: build-dev ## load benchmarks against peers (by hand, not in CI)
	$(PY) benchmarks/run.py
