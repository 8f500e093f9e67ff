# One entry point for people and CI: `make test` builds the venv when needed, lints, tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test dev clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: lint
	$(BIN)/pytest -q

dev: $(STAMP)
	$(BIN)/stageline dev --demo

clean:
	rm -rf $(VENV) .stageline .mypy_cache .pytest_cache .ruff_cache

bench: $(STAMP)
	$(BIN)/python -m bench.run
