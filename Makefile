# Every target sets up what it needs: a fresh machine with Python 3.10+ is enough.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export AIRFLOW_HOME := $(CURDIR)/.airflow-home
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: install test lint unit demo bench clean test-browser

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed (set PYTHON=python3.x)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet --python $(PY) -e '.[dev,amazon,postgres]'
	@touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint unit

# The browser test (tests/ui): Airflow's web UI in Debian's Chromium via Playwright. Never `playwright install`:
# the test launches /usr/bin/chromium itself.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(VENV)/.installed-browser: $(VENV)/.installed
	$(UV) pip install --quiet --python $(PY) -e '.[dev,amazon,postgres,browser]'
	@touch $@

test-browser: $(VENV)/.installed-browser
	@test -x $(CHROMIUM) || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
		{ $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	$(VENV)/bin/pytest tests/ui -v -s -p no:cacheprovider $(PYTEST_ARGS)

demo: install
	$(PY) tools/demo.py

$(VENV)/.installed-bench: $(VENV)/.installed
	$(UV) pip install --quiet --python $(PY) -e '.[dev,amazon,postgres,bench]' || \
		echo "bench extra (dlt) could not be installed; the dlt baseline will say so"
	@touch $@

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .airflow-home demo-output .pytest_cache .mypy_cache .ruff_cache
