# The two commands of the README: `make run` (install, then serve the bundled bot) and
# `make test` (install with test extras, headless Chromium and redis-server, then ruff and the whole
# suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# Which TensorFlow: `cpu` (tensorflow-cpu) or `gpu` (tensorflow[and-cuda]); exactly one.
TF_EXTRA ?= cpu

.PHONY: run test bench install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(TF_EXTRA)]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[$(TF_EXTRA),test]'
	bash scripts/install-browser.sh
	bash scripts/install-redis.sh
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/alime serve --host $(HOST) --port $(PORT)

# Lint first: a finding or an unformatted file fails `make test` (and so `.ci/run`) before pytest.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)
