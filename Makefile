# Every target creates and uses a local .venv: nothing to install by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-sqlite lint bench clean wheel-smoke

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## synthetic bundle -> ETL -> derivations -> study report, into ./demo/
	$(BIN)/registry demo --out demo --yes

TEST_WORKERS ?= 2  # pytest-xdist processes (the CI machine has two cores; 0: one process)

test: $(STAMP)  ## the whole suite on SQLite and PostgreSQL
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25

test-sqlite: $(STAMP)
	$(BIN)/python -m pytest -q --engines sqlite

wheel-smoke:  ## build the wheel, install it into a fresh venv, run the registry from another folder
	.ci/wheel-smoke

lint: $(STAMP)
	$(BIN)/ruff check registry etl jobs tests migrations bench setup.py
	$(BIN)/ruff format --check registry etl jobs tests migrations bench setup.py
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)  ## load vs the bulk-load floor, second nights, Cox vs R (docs/benchmarks.md)
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/bench_nights.py
	$(BIN)/python bench/bench_cox.py

clean:
	rm -rf $(VENV) demo registry.db registry.db.lock .pytest_cache .mypy_cache .ruff_cache
