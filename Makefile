# One entry point for people and CI: `make test` builds the venv when needed, lints, tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test test-fast test-browser screenshots dev clean bench

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

# Everything but the browser suite (tests/browser: the real Temporal UI in chromium).
test-fast: lint
	$(BIN)/pytest -q -m "not browser"

# Only the browser suite; needs chromium at /usr/bin/chromium (apt-get install chromium).
test-browser: $(STAMP)
	$(BIN)/pytest -q -m browser tests/browser

# The README's screenshots of the Temporal UI, taken by the browser suite.
screenshots: $(STAMP)
	STAGELINE_SCREENSHOTS=docs $(BIN)/pytest -q -m browser tests/browser

dev: $(STAMP)
	$(BIN)/stageline dev --demo

clean:
	rm -rf $(VENV) .stageline .mypy_cache .pytest_cache .ruff_cache

bench: $(STAMP)
	$(BIN)/python -m bench.run
