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
	$(BIN)/pip install -q -c requirements.lock -e '.[test,tf]'
	$(BIN)/pip install -q --no-deps -c requirements.lock neural-tangents==0.6.5
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python scripts/compare.py --config=experiments/configs/compare.py --workdir=$(WORKDIR)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 tests

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests

.PHONY: install demo test test-fast
