# Everyday commands. `make demo` and `make test` work on a fresh machine: they create .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint typecheck bench bench-submit services clean

# The native kernel is built by the install, so its sources re-run it too.
$(STAMP): pyproject.toml models/native/xor_kernel.c models/native/kernel_body.h
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is pinned (the machine has its CPU wheel on disk); pip, not uv, finds it.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

## Train the seed's three scripts on the embedded default (no servers) and print the results.
demo: $(STAMP)
	$(VENV)/bin/xorjobs run

## The default test run (the one CI runs): starts Redis/Postgres if they are down.
test: $(STAMP)
	./scripts/ensure_services.sh
	$(PY) -m pytest

## Also the long fault soaks (tests marked `slow`, skipped without --run-slow; README: "What the fault tests show").
test-all: $(STAMP)
	./scripts/ensure_services.sh
	$(PY) -m pytest --run-slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Everything in the repository: xorjobs covers api/, worker/ and models/ (they are linked into it).
typecheck: $(STAMP)
	$(VENV)/bin/mypy xorjobs tests bench scripts

bench: $(STAMP)
	./scripts/ensure_services.sh
	$(PY) -m bench.run_all

## How long the API takes to handle a 3-job POST /sweeps, against the old broadcast-per-submit path.
bench-submit: $(STAMP)
	$(PY) -m bench.submit_latency

services:
	./scripts/ensure_services.sh

clean:
	rm -rf $(VENV) .xorjobs .pytest_cache .mypy_cache .ruff_cache
