# floxide: `make demo` runs a workflow, `make test` runs every check, `make docs` builds the
# documentation site into site/, `make bench` benchmarks.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test pytest typecheck typecheck-oldest mypy lint docs bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev,redis,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

typecheck: $(STAMP)
	$(BIN)/python -m pytest -q typecheck_tests -p no:trio -p no:cacheprovider -W ignore::pytest.PytestConfigWarning

# The oldest mypy the plugin supports (pyproject's `mypy` extra), beside the newest in the venv.
MYPY_OLDEST := 1.20.2
OLDEST := $(VENV)/mypy-$(MYPY_OLDEST)

$(OLDEST)/.installed: $(STAMP)
	$(BIN)/python -m pip install -q --target $(OLDEST) 'mypy==$(MYPY_OLDEST)'
	touch $@

typecheck-oldest: $(OLDEST)/.installed
	PYTHONPATH=$(OLDEST) $(BIN)/python -m mypy --version | grep -qx 'mypy $(MYPY_OLDEST).*'
	PYTHONPATH=$(OLDEST) $(BIN)/python -m pytest -q typecheck_tests -p no:trio -p no:cacheprovider -W ignore::pytest.PytestConfigWarning

mypy: $(STAMP)
	$(BIN)/python -m mypy --strict floxide mypy_plugin/floxide_mypy
	$(BIN)/python -m mypy --strict examples

lint: $(STAMP)
	$(BIN)/python -m ruff check .

# The documentation site (mkdocs.yml): offline, and any warning (a broken link, reference
# or include) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --clean --site-dir site

# Runs every check even when an earlier one fails, then fails if any did.
test: $(STAMP)
	@status=0; for step in lint mypy docs pytest typecheck typecheck-oldest; do \
	  echo "== make $$step"; $(MAKE) --no-print-directory $$step || status=1; done; \
	  if [ $$status -ne 0 ]; then echo "== make test: FAILED"; else echo "== make test: all passed"; fi; \
	  exit $$status

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
