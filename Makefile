# One entry point for people and CI: `make test` builds the venv when needed, lints, tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := activities cli models server services store vault worker workflows

.PHONY: install lint test test-fast test-browser screenshots dev clean bench sandbox-deps browser-deps

# Debian packages, installed with apt-get when missing (as root, else with sudo): bubblewrap,
# the sandbox every pipeline step runs in; chromium, for the browser suite (Playwright drives
# it; it never downloads a browser).
define apt_install
	@missing=""; for pair in $(1); do command -v "$${pair%%:*}" >/dev/null 2>&1 || \
		missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

sandbox-deps:
	$(call apt_install,bwrap:bubblewrap)

browser-deps:
	$(call apt_install,bwrap:bubblewrap chromium:chromium)

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

test: lint browser-deps
	$(BIN)/pytest -q --durations=15

# Everything but the browser suite (tests/browser: the real Temporal UI in chromium) and the
# slowest suites (marked slow: workers killed, databases stopped mid-promotion).
test-fast: lint sandbox-deps
	$(BIN)/pytest -q -m "not browser and not slow"

# Only the browser suite: the Temporal UI and the web console, in chromium (about two minutes).
test-browser: $(STAMP) browser-deps
	$(BIN)/pytest -q -m browser tests/browser

# The README's screenshots of the Temporal UI and the web console, taken by the browser suite.
screenshots: $(STAMP) browser-deps
	STAGELINE_SCREENSHOTS=docs $(BIN)/pytest -q -m browser tests/browser

# The product with its demo: prints the console's address and the demo users first, then
# takes web@1.0.0 to production, where it waits for alice (README, top).
dev: $(STAMP) sandbox-deps
	$(BIN)/python -m compileall -q -j 0 $(PACKAGES)
	$(BIN)/stageline dev --demo

clean:
	rm -rf $(VENV) .stageline .mypy_cache .pytest_cache .ruff_cache

# Byte-compiled first, as pip does when it installs a wheel: the workflow sandbox imports a
# workflow's module afresh for every run, and without a .pyc (a fresh checkout, or
# PYTHONDONTWRITEBYTECODE set) it compiles the source each time, ~5 ms per promotion.
bench: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 $(PACKAGES)
	$(BIN)/python -m bench.run
