# Every target sets up what it needs: a fresh machine with Python 3.10+ is enough.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export AIRFLOW_HOME := $(CURDIR)/.airflow-home
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: install test lint unit demo bench clean test-browser test-compat test-triggerer test-cluster

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

# The real-triggerer test (tests/triggerer): dag-processor, scheduler, api-server and `airflow triggerer` as
# separate processes on a fresh PostgreSQL database, 50 deferred sensors and the event-driven example DAG.
test-triggerer: install
	$(VENV)/bin/pytest tests/triggerer -v -s -p no:cacheprovider $(PYTEST_ARGS)

# The Celery cluster test (tests/cluster): the CeleryExecutor with Redis (127.0.0.1:6379) as broker, PostgreSQL as
# metadata database and result backend, two `airflow celery worker`s; the example DAGs backfilled over 30 days into
# moto's S3 and Postgres, checked against the simulator's ground truth; a worker SIGKILLed mid-task.
$(VENV)/.installed-cluster: $(VENV)/.installed
	$(UV) pip install --quiet --python $(PY) -e '.[dev,amazon,postgres,celery]'
	@touch $@

test-cluster: $(VENV)/.installed-cluster
	$(VENV)/bin/pytest tests/cluster -v -s -p no:cacheprovider $(PYTEST_ARGS)

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

# -- make test-compat: the suite on the other supported Airflow 3 releases and Pythons ------------------------
# Full suite on the oldest release (3.0.x, Python 3.10); `make test` runs it all on 3.3.x with the main .venv's
# Python; on 3.3.x with Python 3.13, the smoke subset plus landing, Postgres and verify. A smoke subset
# (every module imports, hook/operator/sensor/trigger tests, dag.test() of an example DAG) on 3.1.x and 3.2.x,
# Python 3.12. Each venv pins its release and what a plain
# install of it gets wrong in compat/constraints-airflow-3.X.txt.
PYENV_ROOT_DIR := $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
# The newest installed 3.x.y under pyenv, else python3.x on PATH.
find_python = $(or $(lastword $(sort $(wildcard $(PYENV_ROOT_DIR)/versions/$(1).*/bin/python))),$(shell command -v python$(1) 2>/dev/null))
PYTHON310 ?= $(call find_python,3.10)
PYTHON312 ?= $(call find_python,3.12)
PYTHON313 ?= $(call find_python,3.13)
COMPAT_SMOKE := tests/test_imports.py tests/example_dags tests/hooks tests/operators/test_logs.py \
	tests/operators/test_logs_to_object_storage.py tests/operators/test_first_event.py \
	tests/sensors/test_pipeline_sensor.py tests/triggers

# What a newer Python could change besides the smoke subset: gzip/hashing/JSON of landing, psycopg, the reports.
COMPAT_PYTHON := tests/test_landing.py tests/test_landing_concurrency.py tests/transfers tests/test_verify.py

# $(1): venv suffix (af30), $(2): Airflow minor (3.0), $(3): the interpreter variable's name (PYTHON310).
define compat_venv
.venv-$(1)/.installed: pyproject.toml compat/constraints-airflow-$(2).txt
	@test -n "$$($(3))" && test -x "$$($(3))" || { echo "make test-compat needs Python for Airflow $(2): \
	none found as $(3) ('$$($(3))'); install it (pyenv install $(subst PYTHON3,3.,$(3))) or set $(3)=/path/to/python" >&2; exit 1; }
	@test -x .venv-$(1)/bin/python || $$($(3)) -m venv .venv-$(1)
	@test -x .venv-$(1)/bin/uv || .venv-$(1)/bin/python -m pip install --quiet --disable-pip-version-check uv
	.venv-$(1)/bin/uv pip install --quiet --python .venv-$(1)/bin/python \
		-c compat/constraints-airflow-$(2).txt -e '.[dev,amazon,postgres]'
	@.venv-$(1)/bin/python -c 'import sys, airflow; print(f"$(1): Airflow {airflow.__version__} on Python {sys.version.split()[0]}")'
	@touch $$@
endef
$(eval $(call compat_venv,af30,3.0,PYTHON310))
$(eval $(call compat_venv,af31,3.1,PYTHON312))
$(eval $(call compat_venv,af32,3.2,PYTHON312))
$(eval $(call compat_venv,af33,3.3,PYTHON313))

# $(1): venv suffix; $(2): what to run (empty: the whole suite); output to .compat-logs/$(1).log, and the lane's
# outcome to .compat-logs/$(1).rc. Two lanes run side by side (each test uses its own PostgreSQL schema or
# database, port and Airflow home): the full suite on 3.0 in one, the three shorter runs one after another in the
# other. Each run's whole output is printed when both lanes are done; the target fails if any run failed.
compat_run = { AIRFLOW_HOME=$(CURDIR)/.airflow-home-$(1) .venv-$(1)/bin/pytest -q -p no:cacheprovider $(2) \
	$(PYTEST_ARGS) > .compat-logs/$(1).log 2>&1; echo $$? > .compat-logs/$(1).rc; }

test-compat: .venv-af30/.installed .venv-af31/.installed .venv-af32/.installed .venv-af33/.installed
	@rm -rf .compat-logs && mkdir .compat-logs
	@echo "== compat: Airflow 3.0/Python 3.10 full suite, beside 3.3/Python 3.13, 3.1 and 3.2 (Python 3.12) in turn"
	@$(call compat_run,af30) & \
	{ $(call compat_run,af33,$(COMPAT_SMOKE) $(COMPAT_PYTHON)); $(call compat_run,af31,$(COMPAT_SMOKE)); \
	  $(call compat_run,af32,$(COMPAT_SMOKE)); } ; wait
	@failed=""; for lane in "af30:Airflow 3.0, Python 3.10: full suite" \
		"af33:Airflow 3.3, Python 3.13: smoke subset, landing, Postgres and verify (make test runs all of 3.3)" \
		"af31:Airflow 3.1, Python 3.12: smoke subset" "af32:Airflow 3.2, Python 3.12: smoke subset"; do \
		v=$${lane%%:*}; echo "== $${lane#*:}"; cat .compat-logs/$$v.log; \
		test "$$(cat .compat-logs/$$v.rc)" = 0 || failed="$$failed $$v"; done; \
	for v in af30 af33 af31 af32; do echo "compat $$v: $$(tail -1 .compat-logs/$$v.log)"; done; \
	test -z "$$failed" || { echo "make test-compat FAILED in:$$failed" >&2; exit 1; }

demo: install
	$(PY) tools/demo.py

$(VENV)/.installed-bench: $(VENV)/.installed
	$(UV) pip install --quiet --python $(PY) -e '.[dev,amazon,postgres,bench]' || \
		echo "bench extra (dlt) could not be installed; the dlt baseline will say so"
	@touch $@

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .airflow-home demo-output .pytest_cache .mypy_cache .ruff_cache \
		.compat-logs .venv-af30 .venv-af31 .venv-af32 .venv-af33 .airflow-home-af30 .airflow-home-af31 .airflow-home-af32 .airflow-home-af33
