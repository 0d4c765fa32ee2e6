# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.resdet-installed
PYTHON ?= python3

.PHONY: setup chromium demo test test-fast lint format docs clean

setup: $(STAMP)

# Re-runs only when the packaging files change, so a second `make setup` takes seconds.
$(STAMP): setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/resdet demo

# The report's browser test (tests/tools/test_report_browser.py) renders it in headless
# Chromium: Debian's package, installed when absent (needs root, as in CI).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# pytest exits 5 when it collects no tests; any non-zero exit fails the target.
test: setup chromium
	$(PY) -m pytest -q

test-fast: setup chromium
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check engine backbones detection tools tests benchmarks configs
	$(VENV)/bin/ruff format --check engine backbones detection tools tests benchmarks configs
	$(VENV)/bin/mypy engine backbones detection tools configs

format: setup
	$(VENV)/bin/ruff format engine backbones detection tools tests benchmarks configs
	$(VENV)/bin/ruff check --fix engine backbones detection tools tests benchmarks configs

docs: setup
	$(PY) -m tools.config_docs > docs/CONFIG.md

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
