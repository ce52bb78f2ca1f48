# The interface to genq: `make test` is what CI and the README run.
PYTHON ?= python3
# scripts/install.sh creates .venv only for an OS-managed interpreter; use it when present.
# (`=` not `:=`: evaluated when a recipe runs, i.e. after `install` may have created it.)
PY = $(if $(wildcard .venv/bin/python),.venv/bin/python,$(PYTHON))
PYTEST_ARGS ?=
# One xdist worker per CPU, each with its own Redis, PostgreSQL and data dirs (tests/conftest.py);
# loadgroup keeps the tests marked xdist_group("runtime") (the embedded model) on one worker.
PYTEST_PARALLEL ?= -n auto --dist loadgroup

.PHONY: install test lint format bench up clean print-python print-pytest-parallel

install:
	PYTHON="$(PYTHON)" scripts/install.sh

test: install
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -c 'from importlinter.cli import lint_imports_command; lint_imports_command()' --no-cache

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(PY) -m benchmarks

up: install
	$(PY) -m genq up

# Build output and caches only: .venv and var/ (local data) are kept.
clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .install-stamp
	find . -path ./.venv -prune -o \( -name __pycache__ -o -name "*.egg-info" \) -type d -prune -exec rm -rf {} +

print-python:
	@echo $(PY)

print-pytest-parallel:
	@printf '%s\n' '$(PYTEST_PARALLEL)'
