# floxide: `make demo` runs a workflow, `make test` runs every check, `make bench` benchmarks.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test pytest typecheck mypy lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev,redis]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

typecheck: $(STAMP)
	$(BIN)/python -m pytest -q typecheck_tests -p no:trio -p no:cacheprovider

mypy: $(STAMP)
	$(BIN)/python -m mypy --strict floxide mypy_plugin/floxide_mypy
	$(BIN)/python -m mypy --strict examples

lint: $(STAMP)
	$(BIN)/python -m ruff check .

test: $(STAMP)
	$(MAKE) --no-print-directory lint mypy pytest typecheck

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
