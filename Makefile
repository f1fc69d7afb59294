# Two entry points for a fresh machine with Python 3.11 and pip:
#   make demo   - create .venv, install the pinned stack, run the main job
#   make test   - create the same .venv and run the whole test suite (what CI runs)
#   make test-fast - the same without the tests marked slow (the edit loop)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/compare

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python scripts/compare.py --config=experiments/configs/compare.py --workdir=$(WORKDIR)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 tests

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests

# The JAX 0.10 stack (requirements-jax010.lock) in its own venv; TensorFlow only for the TFDS
# reading tests. Not what CI runs (the default pins stay at JAX 0.5.3 until the whole suite
# is verified there).
.venv-jax010/.installed: requirements-jax010.lock pyproject.toml
	$(PYTHON) -m venv .venv-jax010
	.venv-jax010/bin/pip install -q --upgrade pip
	.venv-jax010/bin/pip install -q --no-deps -r requirements-jax010.lock
	.venv-jax010/bin/pip install -q --no-deps -e .
	.venv-jax010/bin/pip install -q tensorflow==2.21.0
	touch $@

test-jax010: .venv-jax010/.installed
	.venv-jax010/bin/python -m pytest -q -n 2 -m "not slow" tests

.PHONY: install demo test test-fast test-jax010
